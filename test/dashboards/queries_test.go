// Package dashboards_test checks opview's generated Grafana dashboards: the committed JSON is
// portable and consistent, every query parses with Prometheus's own PromQL parser once Grafana's
// variables are substituted, and every metric it names exists in a real controller-runtime
// operator's registry or in the real relay's exposition (metrics_test.go).
package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/opview/opview/dashboards"
)

// rateInterval is substituted for $__rate_interval; a distinctive value lets the test prove that
// every range in every query came from $__rate_interval.
const rateInterval = 67 * time.Second

func load(t *testing.T) []dashboards.Dashboard {
	t.Helper()
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("want the operator and relay dashboards, got %d", len(ds))
	}
	return ds
}

// selections are the variable values every query is expanded with: All, one value, and several
// values with regex metacharacters.
func selections(d dashboards.Dashboard) []map[string][]string {
	all := map[string][]string{"__rate_interval": {rateInterval.String()}}
	one := map[string][]string{"__rate_interval": {"1m"}}
	many := map[string][]string{"__rate_interval": {"5m"}}
	for _, v := range d.Variables {
		one[v.Name] = []string{"sample-operator"}
		many[v.Name] = []string{"a.b", "c|d", `e\f`, "x(y)"}
	}
	return []map[string][]string{all, one, many}
}

func parse(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// TestQueriesParse expands every panel query and variable query and parses it with Prometheus's
// parser, and checks that every range is $__rate_interval.
func TestQueriesParse(t *testing.T) {
	for _, d := range load(t) {
		n := 0
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for i, sel := range selections(d) {
					q, err := d.Expand(tg.Expr, sel)
					if err != nil {
						t.Errorf("%s panel %d %q %s: %v", d.UID, p.ID, p.Title, tg.RefID, err)
						continue
					}
					e, err := parse(q)
					if err != nil {
						t.Errorf("%s panel %d %q %s: %v\n%s", d.UID, p.ID, p.Title, tg.RefID, err, q)
						continue
					}
					n++
					if i != 0 {
						continue
					}
					parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
						switch x := node.(type) {
						case *parser.MatrixSelector:
							if x.Range != rateInterval {
								t.Errorf("%s panel %d %q: range [%s] is not $__rate_interval", d.UID, p.ID, p.Title, x.Range)
							}
						case *parser.SubqueryExpr:
							t.Errorf("%s panel %d %q: subquery %s", d.UID, p.ID, p.Title, x)
						}
						return nil
					})
				}
			}
		}
		for _, v := range d.Variables {
			sel := labelValuesSelector(t, v.Query)
			for _, vals := range selections(d) {
				q, err := d.Expand(sel, vals)
				if err != nil {
					t.Errorf("%s variable %s: %v", d.UID, v.Name, err)
					continue
				}
				if _, err := parser.NewParser(parser.Options{}).ParseMetricSelector(q); err != nil {
					t.Errorf("%s variable %s: %q: %v", d.UID, v.Name, q, err)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no query parsed", d.UID)
		}
	}
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+), ([a-z_]+)\)$`)

func labelValuesSelector(t *testing.T, q string) string {
	m := labelValuesRE.FindStringSubmatch(q)
	if m == nil {
		t.Fatalf("variable query %q is not label_values(selector, label)", q)
	}
	return m[1]
}

// Variables used as `label="$var"` would break with several values or All: they must use =~.
var varMatcherRE = regexp.MustCompile(`([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"[^"]*\$`)

// TestCommittedJSON reads the committed files as Grafana would and checks what makes them
// portable and readable.
func TestCommittedJSON(t *testing.T) {
	for _, d := range load(t) {
		raw, err := os.ReadFile(filepath.Join("..", "..", "dashboards", d.File))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			UID        string          `json:"uid"`
			Inputs     json.RawMessage `json:"__inputs"`
			Templating struct {
				List []struct {
					Type       string         `json:"type"`
					Name       string         `json:"name"`
					Query      any            `json:"query"`
					Current    map[string]any `json:"current"`
					Datasource *dsRef         `json:"datasource"`
					Multi      bool           `json:"multi"`
					IncludeAll bool           `json:"includeAll"`
					AllValue   string         `json:"allValue"`
				} `json:"list"`
			} `json:"templating"`
			Panels []jsonPanel `json:"panels"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", d.File, err)
		}
		if m.UID != d.UID || !strings.HasPrefix(m.UID, "opview-") {
			t.Errorf("%s: uid %q, want %q (opview- prefixed)", d.File, m.UID, d.UID)
		}
		if m.Inputs != nil || strings.Contains(string(raw), "DS_PROMETHEUS") {
			t.Errorf("%s: __inputs/${DS_PROMETHEUS} never resolve under file provisioning", d.File)
		}
		vars := m.Templating.List
		if len(vars) == 0 || vars[0].Type != "datasource" || vars[0].Name != "datasource" || vars[0].Query != "prometheus" ||
			vars[0].Current["value"] != dashboards.DatasourceUID {
			t.Errorf("%s: first variable must be `datasource` of type prometheus defaulting to uid %q: %+v", d.File, dashboards.DatasourceUID, vars)
		}
		for _, v := range vars[1:] {
			if v.Datasource == nil || !v.Datasource.ok() {
				t.Errorf("%s: variable %s does not use ${datasource}", d.File, v.Name)
			}
			if !v.Multi || !v.IncludeAll || v.AllValue != ".*" {
				t.Errorf("%s: variable %s should be multi-value with All = .*", d.File, v.Name)
			}
		}

		// A collapsed row holds its panels (Grafana's classic model); an expanded row holds none.
		var all []jsonPanel
		for _, p := range m.Panels {
			all = append(all, p)
			if p.Type == "row" && p.Collapsed {
				all = append(all, p.Panels...)
			} else if len(p.Panels) > 0 {
				t.Errorf("%s: %s %d %q holds panels but is not a collapsed row", d.File, p.Type, p.ID, p.Title)
			}
		}
		ids := map[uint32]string{}
		var queries []jsonPanel
		for _, p := range all {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("%s: panel id %d of %q is zero or already used by %q", d.File, p.ID, p.Title, prev)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" {
				queries = append(queries, p)
			}
		}
		if len(queries) != len(d.Panels) {
			t.Fatalf("%s: %d panels with queries in the JSON, %d from dashboards.All()", d.File, len(queries), len(d.Panels))
		}
		for i, p := range queries {
			where := fmt.Sprintf("%s panel %d %q", d.File, p.ID, p.Title)
			if p.ID != d.Panels[i].ID {
				t.Errorf("%s: id differs from dashboards.All() (%d)", where, d.Panels[i].ID)
			}
			if p.Datasource == nil || !p.Datasource.ok() {
				t.Errorf("%s: panel datasource is not ${datasource}", where)
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: no unit", where)
			}
			if p.Type == "timeseries" && p.FieldConfig.Defaults.Custom.Stacking.Mode != "none" {
				t.Errorf("%s: series are stacked", where)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || !tg.Datasource.ok() {
					t.Errorf("%s %s: target datasource is not ${datasource}", where, tg.RefID)
				}
				if tg.RefID == "" {
					t.Errorf("%s: target without refId", where)
				}
				for _, mm := range varMatcherRE.FindAllStringSubmatch(tg.Expr, -1) {
					if mm[2] != "=~" {
						t.Errorf("%s %s: %s%s\"$...\" must be =~ for multi-value variables", where, tg.RefID, mm[1], mm[2])
					}
				}
				checkLegend(t, where+" "+tg.RefID, p.Type, tg.Expr, tg.LegendFormat)
				checkGrouping(t, where+" "+tg.RefID, tg.Expr)
			}
		}
	}
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func (r *dsRef) ok() bool { return r.Type == "prometheus" && r.UID == "${datasource}" }

type jsonPanel struct {
	ID          uint32      `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Collapsed   bool        `json:"collapsed"`
	Panels      []jsonPanel `json:"panels"`
	Datasource  *dsRef      `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit   string `json:"unit"`
			Custom struct {
				Stacking struct {
					Mode string `json:"mode"`
				} `json:"stacking"`
			} `json:"custom"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		Datasource   *dsRef `json:"datasource"`
	} `json:"targets"`
}

func expandAll(t *testing.T, expr string) parser.Expr {
	t.Helper()
	q := regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`).ReplaceAllStringFunc(expr, func(s string) string {
		if strings.Contains(s, "__rate_interval") {
			return "1m"
		}
		return ".*"
	})
	e, err := parse(q)
	if err != nil {
		t.Fatalf("%q: %v", q, err)
	}
	return e
}

// outerGrouping returns the labels the outermost aggregation keeps (nil when it keeps none or
// there is no aggregation), without le (consumed by histogram_quantile).
func outerGrouping(e parser.Expr) []string {
	var by []string
	found := false
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if a, ok := node.(*parser.AggregateExpr); ok && !found {
			found = true
			for _, l := range a.Grouping {
				if l != "le" {
					by = append(by, l)
				}
			}
		}
		return nil
	})
	return by
}

// checkLegend: a legend names the series, so it must mention every label that tells series apart.
func checkLegend(t *testing.T, where, panelType, expr, legend string) {
	t.Helper()
	if strings.TrimSpace(legend) == "" || legend == "__auto" {
		t.Errorf("%s: no legend", where)
		return
	}
	if panelType == "heatmap" {
		if legend != "{{le}}" {
			t.Errorf("%s: heatmap legend must be {{le}}", where)
		}
		return
	}
	for _, l := range outerGrouping(expandAll(t, expr)) {
		if !strings.Contains(legend, "{{"+l+"}}") {
			t.Errorf("%s: legend %q does not name label %s that tells the series apart", where, legend, l)
		}
	}
}

// checkGrouping: controller-runtime's per-controller families are grouped by controller (or
// summed over everything), never by pod or instance; nothing groups by pod.
func checkGrouping(t *testing.T, where, expr string) {
	t.Helper()
	e := expandAll(t, expr)
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		a, ok := node.(*parser.AggregateExpr)
		if !ok {
			return nil
		}
		if slices.Contains(a.Grouping, "pod") {
			t.Errorf("%s: groups by pod", where)
		}
		by := slices.DeleteFunc(slices.Clone(a.Grouping), func(l string) bool { return l == "le" })
		if a.Without || len(by) == 0 {
			return nil // summed over every controller (a total, or the buckets of one histogram)
		}
		for _, name := range metricNames(a.Expr) {
			perController := strings.HasPrefix(name, "workqueue_") ||
				(strings.HasPrefix(name, "controller_runtime_") && !strings.Contains(name, "webhook"))
			if perController && (!slices.Contains(a.Grouping, "controller") || slices.Contains(a.Grouping, "instance")) {
				t.Errorf("%s: per-controller metric %s grouped by %v, want by controller", where, name, a.Grouping)
			}
		}
		return nil
	})
}

// metricNames lists the metric names selected anywhere in e.
func metricNames(e parser.Node) []string {
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}
