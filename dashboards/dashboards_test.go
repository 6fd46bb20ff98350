package dashboards

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestCommittedJSONIsGenerated fails when a committed dashboard differs from the generator's
// output: run `make dashboards` and commit.
func TestCommittedJSONIsGenerated(t *testing.T) {
	ds, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		got, err := os.ReadFile(d.File)
		if err != nil {
			t.Fatalf("%s: %v (run `make dashboards` and commit)", d.File, err)
		}
		if !bytes.Equal(got, d.JSON) {
			t.Errorf("%s differs from the generator's output: run `make dashboards` and commit", d.File)
		}
	}
}

func TestGenerationIsDeterministic(t *testing.T) {
	a, err := All()
	if err != nil {
		t.Fatal(err)
	}
	b, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !bytes.Equal(a[i].JSON, b[i].JSON) {
			t.Errorf("%s: two runs gave different JSON", a[i].File)
		}
	}
}

func TestExpand(t *testing.T) {
	d := Dashboard{Variables: []Variable{
		{Name: "job", Multi: true, IncludeAll: true, AllValue: ".*"},
		{Name: "one"},
	}}
	for _, c := range []struct {
		expr string
		vals map[string][]string
		want string
		err  bool
	}{
		{`x{job=~"$job"}[$__rate_interval]`, map[string][]string{"__rate_interval": {"1m"}}, `x{job=~".*"}[1m]`, false},
		{`x{job=~"${job}"}`, map[string][]string{"job": {"a.b", "c"}}, `x{job=~"(a\\.b|c)"}`, false},
		{`x{job=~"$job"}`, map[string][]string{"job": {"op"}}, `x{job=~"op"}`, false},
		{`x{j="$one"}`, map[string][]string{"one": {"a.b"}}, `x{j="a.b"}`, false},
		{`x{j="$one"}`, nil, "", true},
		{`x[$__rate_interval]`, nil, "", true},
		{`x{j="$nope"}`, nil, "", true},
	} {
		got, err := d.Expand(c.expr, c.vals)
		if (err != nil) != c.err {
			t.Errorf("Expand(%q): err = %v, want error %v", c.expr, err, c.err)
			continue
		}
		if !c.err && got != c.want {
			t.Errorf("Expand(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// The rows a stock kubebuilder operator never fills (no webhook, no leader election unless asked
// for) start collapsed, holding their panels; the others start open.
func TestRowsAStockOperatorNeverFillsStartCollapsed(t *testing.T) {
	ds, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var op Dashboard
	for _, d := range ds {
		if d.UID == OperatorUID {
			op = d
		}
	}
	var m struct {
		Panels []struct {
			Type      string `json:"type"`
			Title     string `json:"title"`
			Collapsed bool   `json:"collapsed"`
			Panels    []struct {
				Title string `json:"title"`
			} `json:"panels"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(op.JSON, &m); err != nil {
		t.Fatal(err)
	}
	// Collapsed rows and how the titles of their panels begin.
	collapsed := map[string]string{"Webhooks": "Webhook ", "Leader election": "Leader"}
	rows := 0
	for _, p := range m.Panels {
		if p.Type != "row" {
			continue
		}
		rows++
		prefix, want := collapsed[p.Title]
		if p.Collapsed != want {
			t.Errorf("row %q collapsed = %v", p.Title, p.Collapsed)
		}
		for _, inner := range p.Panels {
			if !p.Collapsed || !strings.HasPrefix(inner.Title, prefix) {
				t.Errorf("row %q (collapsed %v) holds panel %q", p.Title, p.Collapsed, inner.Title)
			}
		}
		if p.Collapsed && len(p.Panels) == 0 {
			t.Errorf("collapsed row %q holds no panel", p.Title)
		}
	}
	if rows < 5 {
		t.Fatalf("%d rows in %s", rows, op.File)
	}
}
