package bench

import (
	"math"
	"strings"
	"testing"
)

// level builds a Level whose servers have the given figures per repetition.
func level(n int, figs map[string]map[string][]float64) *Level {
	lv := &Level{N: n, Servers: map[string]*ServerLevel{}}
	for server, byFigure := range figs {
		sl := &ServerLevel{Reached: true}
		for figure, values := range byFigure {
			for i, v := range values {
				for len(sl.Runs) <= i {
					sl.Runs = append(sl.Runs, map[string]float64{})
				}
				if !math.IsNaN(v) {
					sl.Runs[i][figure] = v
				}
			}
		}
		lv.Servers[server] = sl
	}
	return lv
}

func f64(v float64) *float64 { return &v }

func TestEvaluate(t *testing.T) {
	cpu := Goal{Name: "cpu", Of: "relay/cpu_seconds_per_push", Over: "limit/cpu_seconds_per_push", AtMost: f64(1.25)}
	rate := Goal{Name: "rate", Of: "relay/pushes_per_second", Over: "pushgateway-unchecked/pushes_per_second", AtLeast: f64(1.5)}
	mem := Goal{Name: "mem", Of: "relay/rss_bytes_per_series", Over: "pushgateway-unchecked/rss_bytes_per_series", AtMost: f64(0.35), N: []int{100, 500}}
	levels := []*Level{
		level(1, map[string]map[string][]float64{
			Relay:                {CPUSecondsPerPush: {1.2, 1.1, 3.0}, PushesPerSecond: {300, 310, 320}, RSSBytesPerSeries: {5000, 5000, 5000}},
			Limit:                {CPUSecondsPerPush: {1, 1, 1}},
			PushgatewayUnchecked: {PushesPerSecond: {100, 100, 100}, RSSBytesPerSeries: {7000, 7000, 7000}},
		}),
		level(100, map[string]map[string][]float64{
			Relay:                {CPUSecondsPerPush: {1.3, 1.4, 1.0}, PushesPerSecond: {300, 100, 200}, RSSBytesPerSeries: {300, 300, 300}},
			Limit:                {CPUSecondsPerPush: {1, 1, 1}},
			PushgatewayUnchecked: {PushesPerSecond: {200, 200, 100}, RSSBytesPerSeries: {1000, 1000, 1000}},
		}),
	}
	res := Evaluate([]Goal{cpu, rate, mem}, levels)

	// cpu: medians 1.2 at N=1 (one bad repetition at 3.0 does not count), 1.3 at N=100: missed.
	c := res[0]
	if c.Met || len(c.At) != 2 || !c.At[0].Met || c.At[1].Met || c.At[0].Ratio.Median != 1.2 || c.At[0].Ratio.Max != 3 {
		t.Errorf("cpu goal: %+v", c)
	}
	// rate: ratios per repetition 3,3.1,3.2 and 1.5,0.5,2: median 1.5 meets at least 1.5.
	r := res[1]
	if !r.Met || r.At[1].Ratio.Median != 1.5 || r.At[1].Ratio.Min != 0.5 {
		t.Errorf("rate goal: %+v %+v", r, r.At[1].Ratio)
	}
	// mem: only N=100 and N=500 count; N=500 was not measured, so the goal is not met.
	m := res[2]
	if m.Met || len(m.At) != 2 || !m.At[0].Met || m.At[1].Ratio != nil || len(m.Missing) != 1 || m.Missing[0] != 500 {
		t.Errorf("mem goal: %+v", m)
	}
}

func TestEvaluateServerNotReached(t *testing.T) {
	lv := level(500, map[string]map[string][]float64{
		Relay:       {PushesPerSecond: {500}},
		Pushgateway: {PushesPerSecond: {3}},
	})
	lv.Servers[Pushgateway].Reached = false
	res := Evaluate([]Goal{{Name: "x", Of: "relay/pushes_per_second", Over: "pushgateway/pushes_per_second", AtLeast: f64(10)}}, []*Level{lv})
	if res[0].Met || len(res[0].Missing) != 1 {
		t.Fatalf("a goal over a server that did not reach the level: %+v", res[0])
	}
}

func TestParseGoalsIsStrict(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`[{"name": "a", "of": "relay/pushes_per_second", "over": "pushgateway/pushes_per_second", "at_least": 1, "typo": 2}]`, `unknown field "typo"`},
		{`[{"of": "relay/pushes_per_second", "over": "pushgateway/pushes_per_second", "at_least": 1}]`, "name is required"},
		{`[{"name": "a", "of": "relay/pushes_per_second", "over": "pushgateway/pushes_per_second"}]`, "exactly one of at_most and at_least"},
		{`[{"name": "a", "of": "relay/pushes_per_second", "over": "pushgateway/pushes_per_second", "at_least": 1, "at_most": 2}]`, "exactly one"},
		{`[{"name": "a", "of": "relay/speed", "over": "pushgateway/pushes_per_second", "at_least": 1}]`, `goal 1 ("a"): of "relay/speed"`},
		{`[{"name": "a", "of": "relay/pushes_per_second", "over": "nginx/pushes_per_second", "at_least": 1}]`, `over "nginx/pushes_per_second"`},
		{`[{"name": "a", "of": "relay/pushes_per_second", "over": "limit/pushes_per_second", "at_least": 1, "n": [0]}]`, "n: 0"},
		{`[] []`, "trailing data"},
	} {
		if _, err := ParseGoals([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseGoals(%s) = %v; want an error containing %q", c.in, err, c.want)
		}
	}
}

// The committed goals file parses and holds the goals: the parse-only limit, Pushgateway's
// fastest mode, the bare-bytes limit in both formats, memory.
func TestCommittedGoals(t *testing.T) {
	goals, err := LoadGoals("goals.json")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"relay/cpu_seconds_per_push": "limit/cpu_seconds_per_push <= 1.25",
		"relay/pushes_per_second":    "pushgateway-unchecked/pushes_per_second >= 1.5",
		"relay/scrape_text_seconds":  "limit/scrape_text_seconds <= 1.5",
		"relay/scrape_proto_seconds": "limit/scrape_proto_seconds <= 1.5",
		"relay/rss_bytes_per_series": "pushgateway-unchecked/rss_bytes_per_series <= 0.35",
	}
	for _, g := range goals {
		if w := want[g.Of]; w != g.Over+" "+g.Target() {
			t.Errorf("goal %q: %s / %s %s; want over %s", g.Name, g.Of, g.Over, g.Target(), w)
		}
		delete(want, g.Of)
	}
	if len(want) > 0 {
		t.Errorf("goals missing: %v", want)
	}
}
