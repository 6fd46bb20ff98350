//go:build e2e

package framework

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opview/opview/dashboards"
)

// PanelQuery is one target of one panel of a generated dashboard, with its variables expanded.
type PanelQuery struct {
	Dashboard, Panel, Expr string
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// builtins are Grafana's interval variables for the bundle's 30 s scrape interval:
// $__rate_interval is max(4 x scrape interval, $__interval + scrape interval).
var builtins = map[string][]string{"__rate_interval": {"2m"}, "__interval": {"30s"}, "__range": {"1h"}}

// DashboardQueries plays the part of Grafana the e2e can: for every generated dashboard (the
// dashboards package's own model), it resolves the query variables in order through Prometheus
// as Grafana does for a user who keeps "All" selected (every value label_values returns; none is
// an error), and expands every panel target with dashboards.Dashboard.Expand.
func DashboardQueries(ctx context.Context, p *Prometheus) ([]PanelQuery, error) {
	ds, err := dashboards.All()
	if err != nil {
		return nil, err
	}
	var out []PanelQuery
	for _, d := range ds {
		values := map[string][]string{}
		for k, v := range builtins {
			values[k] = v
		}
		for _, v := range d.Variables {
			m := labelValues.FindStringSubmatch(strings.TrimSpace(v.Query))
			if m == nil {
				return nil, fmt.Errorf("dashboard %s variable %s: query %q is not label_values(selector, label)", d.UID, v.Name, v.Query)
			}
			sel, err := d.Expand(m[1], values)
			if err != nil {
				return nil, fmt.Errorf("dashboard %s variable %s: %w", d.UID, v.Name, err)
			}
			vals, _, _, err := p.API.LabelValues(ctx, m[2], []string{sel}, time.Time{}, time.Time{})
			if err != nil {
				return nil, fmt.Errorf("dashboard %s variable %s: label_values(%s, %s): %w", d.UID, v.Name, sel, m[2], err)
			}
			if len(vals) == 0 {
				return nil, fmt.Errorf("dashboard %s variable %s: label_values(%s, %s) has no values", d.UID, v.Name, sel, m[2])
			}
			for _, lv := range vals {
				values[v.Name] = append(values[v.Name], string(lv))
			}
			slices.Sort(values[v.Name])
		}
		qs, err := panelQueries(d, values)
		if err != nil {
			return nil, err
		}
		out = append(out, qs...)
	}
	return out, nil
}

// panelQueries expands every target of every panel of d with values.
func panelQueries(d dashboards.Dashboard, values map[string][]string) ([]PanelQuery, error) {
	var out []PanelQuery
	for _, panel := range d.Panels {
		for _, tg := range panel.Targets {
			expr, err := d.Expand(tg.Expr, values)
			if err != nil {
				return nil, fmt.Errorf("dashboard %s panel %q: %w", d.UID, panel.Title, err)
			}
			out = append(out, PanelQuery{Dashboard: d.UID, Panel: panel.Title, Expr: expr})
		}
	}
	return out, nil
}

// DashboardQueriesFor expands every panel target of the generated dashboard uid with the given
// variable values; variables given none stay at "All" and Grafana's interval variables are those
// of DashboardQueries. Nothing is asked of Prometheus.
func DashboardQueriesFor(uid string, values map[string][]string) ([]PanelQuery, error) {
	ds, err := dashboards.All()
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.UID != uid {
			continue
		}
		all := map[string][]string{}
		for k, v := range builtins {
			all[k] = v
		}
		for k, v := range values {
			all[k] = v
		}
		return panelQueries(d, all)
	}
	return nil, fmt.Errorf("no generated dashboard %q", uid)
}
