package dashboards

import (
	"bytes"
	"os"
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
