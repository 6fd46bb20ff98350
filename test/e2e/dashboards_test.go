//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DashboardQuery is one target of one panel of a generated dashboard.
type DashboardQuery struct {
	Dashboard, Panel, Expr string
}

// Variable is a dashboard template variable of type query (label_values(...)).
type Variable struct {
	Name, Query string
}

// LoadDashboards reads every generated dashboard JSON in dir and returns its panel queries and
// template variables, in order.
func LoadDashboards(dir string) ([]DashboardQuery, map[string][]Variable, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, nil, fmt.Errorf("no dashboards in %s (%v)", dir, err)
	}
	var queries []DashboardQuery
	vars := map[string][]Variable{}
	type panel struct {
		Title   string            `json:"title"`
		Panels  []json.RawMessage `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var d struct {
			UID        string            `json:"uid"`
			Panels     []json.RawMessage `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Type  string `json:"type"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := v.Query.(string)
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			vars[d.UID] = append(vars[d.UID], Variable{Name: v.Name, Query: q})
		}
		var walk func(raw []json.RawMessage) error
		walk = func(raw []json.RawMessage) error {
			for _, r := range raw {
				var p panel
				if err := json.Unmarshal(r, &p); err != nil {
					return err
				}
				for _, tg := range p.Targets {
					if tg.Expr != "" {
						queries = append(queries, DashboardQuery{Dashboard: d.UID, Panel: p.Title, Expr: tg.Expr})
					}
				}
				if err := walk(p.Panels); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(d.Panels); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return queries, vars, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// Grafana's built-in interval variables for a 30 s scrape interval (the bundle's): $__rate_interval
// is max(4 x scrape interval, $__interval + scrape interval).
var builtins = map[string]string{"$__rate_interval": "2m", "$__interval": "30s", "$__range": "1h"}

// Grafana is the part of Grafana the e2e can play: resolving a dashboard's query variables the
// way a user who selects "All" sees them, and expanding them into panel queries.
type Grafana struct {
	Base, Host, User, Password string // Prometheus through Traefik
}

// ResolveVariables evaluates label_values(...) variables in order and returns each one's values as
// a regex alternation, as Grafana sends a multi-value variable to Prometheus.
func (g *Grafana) ResolveVariables(ctx context.Context, vars []Variable) (map[string]string, error) {
	values := map[string]string{}
	for _, v := range vars {
		m := labelValues.FindStringSubmatch(strings.TrimSpace(v.Query))
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Query)
		}
		sel := g.Expand(m[1], values)
		u := fmt.Sprintf("%s/api/v1/label/%s/values?match[]=%s", g.Base, m[2], url.QueryEscape(sel))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Host = g.Host
		req.SetBasicAuth(g.User, g.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var r struct {
			Status string   `json:"status"`
			Data   []string `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		_ = resp.Body.Close()
		if err != nil || r.Status != "success" {
			return nil, fmt.Errorf("variable %s (%s): HTTP %d %v", v.Name, sel, resp.StatusCode, err)
		}
		if len(r.Data) == 0 {
			return nil, fmt.Errorf("variable %s: label_values(%s, %s) has no values", v.Name, sel, m[2])
		}
		sort.Strings(r.Data)
		quoted := make([]string, len(r.Data))
		for i, s := range r.Data {
			// As Grafana formats a multi-value variable for Prometheus: regex-escaped, and the
			// backslashes doubled for the PromQL string literal.
			quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`)
		}
		values[v.Name] = "(" + strings.Join(quoted, "|") + ")"
	}
	return values, nil
}

// Expand replaces $var, ${var} and the interval built-ins in expr.
func (g *Grafana) Expand(expr string, values map[string]string) string {
	for k, v := range builtins {
		expr = strings.ReplaceAll(expr, k, v)
	}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, k := range names {
		expr = strings.ReplaceAll(expr, "${"+k+"}", values[k])
		expr = strings.ReplaceAll(expr, "$"+k, values[k])
	}
	return expr
}
