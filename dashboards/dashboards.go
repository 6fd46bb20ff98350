// Package dashboards generates opview's Grafana dashboards (classic JSON model, ready for Grafana
// file provisioning) and exposes every panel query so that tests and the e2e can parse them and run
// them against a real Prometheus.
//
// The dashboards are portable: every panel and target uses the `datasource` template variable
// (type prometheus, default uid "prometheus"), there is no `__inputs` section, uids and panel ids
// are fixed, and every rate uses $__rate_interval.
//
// API for tests and the e2e:
//
//	ds, err := dashboards.All()          // every dashboard, in file order
//	for _, d := range ds {
//		for _, p := range d.Panels {
//			for _, t := range p.Targets {
//				q, err := d.Expand(t.Expr, map[string][]string{
//					"__rate_interval": {"1m"},   // required when the query uses it
//					"job":             {"sample-operator"},
//					// a variable left out (or nil) means "All" (its allValue, ".*")
//				})
//			}
//		}
//	}
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Names shared with the deploy bundle and the e2e.
const (
	// DatasourceUID is the uid of the Prometheus datasource the bundle provisions; it is the
	// default of every dashboard's `datasource` variable.
	DatasourceUID = "prometheus"
	// OperatorUID and RelayUID are the stable dashboard uids.
	OperatorUID = "opview-operator"
	RelayUID    = "opview-relay"
	// AllValue is what a multi-value variable expands to when "All" is selected.
	AllValue = ".*"
)

// Dashboard is one generated dashboard: its JSON and the queries of its panels.
type Dashboard struct {
	UID   string
	Title string
	// File is the file name of the committed JSON inside dashboards/ (e.g. "opview-operator.json").
	File string
	// JSON is the exact content of File.
	JSON []byte
	// Variables are the dashboard's query variables (not the datasource variable), in order.
	Variables []Variable
	// Panels are the panels that carry queries (rows excluded), in layout order.
	Panels []Panel
}

// Variable is a query template variable.
type Variable struct {
	Name string
	// Query is the variable's query, e.g. `label_values(up{job=~"$job"}, instance)`.
	Query      string
	Multi      bool
	IncludeAll bool
	AllValue   string
}

// Panel is a panel with its queries.
type Panel struct {
	ID    uint32
	Title string
	// Type is the Grafana panel plugin id: timeseries, stat, heatmap or table.
	Type string
	// Unit is the panel's default field unit.
	Unit    string
	Targets []Target
}

// Target is one query of a panel.
type Target struct {
	RefID string
	// Expr is the PromQL expression with Grafana variables ($job, $__rate_interval, ...) unexpanded.
	Expr         string
	LegendFormat string
	// Instant is true for instant queries (tables and some stats); range queries otherwise.
	Instant bool
	// Format is "time_series", "table" or "heatmap".
	Format string
}

// All builds every dashboard. The result is deterministic.
func All() ([]Dashboard, error) {
	specs := []dashboardSpec{operatorDashboard(), relayDashboard()}
	out := make([]Dashboard, 0, len(specs))
	for _, s := range specs {
		d, err := s.build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", s.uid, err)
		}
		out = append(out, d)
	}
	return out, nil
}

var varRef = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))`)

// Expand substitutes Grafana variables in expr the way Grafana's Prometheus datasource does.
// values maps a variable name to its selected values; for the dashboard's query variables a
// missing or empty entry means "All" (the variable's allValue). Several values become a regex
// alternation `(a|b)`, each value regex-escaped. Built-in variables (names starting with "__",
// e.g. "__rate_interval") are substituted verbatim and must be given when used. Any other
// unknown variable is an error.
func (d Dashboard) Expand(expr string, values map[string][]string) (string, error) {
	vars := map[string]Variable{}
	for _, v := range d.Variables {
		vars[v.Name] = v
	}
	var firstErr error
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if strings.HasPrefix(name, "__") {
			vs := values[name]
			if len(vs) != 1 {
				if firstErr == nil {
					firstErr = fmt.Errorf("built-in variable $%s needs exactly one value", name)
				}
				return m
			}
			return vs[0]
		}
		v, ok := vars[name]
		if !ok {
			if firstErr == nil {
				firstErr = fmt.Errorf("unknown variable $%s in %q", name, expr)
			}
			return m
		}
		vs := values[name]
		if len(vs) == 0 {
			if !v.IncludeAll {
				if firstErr == nil {
					firstErr = fmt.Errorf("variable $%s has no All option: give it a value", name)
				}
				return m
			}
			return v.AllValue
		}
		if !v.Multi && !v.IncludeAll {
			return vs[0]
		}
		esc := make([]string, len(vs))
		for i, s := range vs {
			esc[i] = regexEscape(s)
		}
		if len(esc) == 1 {
			return esc[0]
		}
		return "(" + strings.Join(esc, "|") + ")"
	})
	return out, firstErr
}

// regexEscape mirrors Grafana's prometheusSpecialRegexEscape: the value lands inside a PromQL
// string used as a regex, so regex metacharacters get a backslash that is itself escaped.
func regexEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\\\`)
		case '$', '^', '*', '{', '}', '[', ']', '\'', '+', '?', '.', '(', ')', '|':
			b.WriteString(`\\`)
			b.WriteRune(r)
		case '"':
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
