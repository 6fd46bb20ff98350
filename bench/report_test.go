package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	b, e := markers("results")
	doc := "# Title\n" + b + "\nold\n" + e + "\nafter\n"
	got, err := ReplaceSection([]byte(doc), "results", "new table")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Title\n" + b + "\nnew table\n" + e + "\nafter\n"; string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := ReplaceSection([]byte(doc), "profiles", "x"); err == nil || !strings.Contains(err.Error(), "bench:profiles:begin") {
		t.Fatalf("missing section: %v", err)
	}
	if _, err := ReplaceSection([]byte(e+"\n"+b), "results", "x"); err == nil {
		t.Fatal("markers in the wrong order accepted")
	}
}

func TestWriteSectionsKeepsTheRest(t *testing.T) {
	gb, ge := markers(GoalsSection)
	rb, re := markers(ResultsSection)
	path := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(path, []byte("# B\n"+gb+"\n"+ge+"\nhand-written\n"+rb+"\n"+re+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSections(path, map[string]string{GoalsSection: "G\n", ResultsSection: "R\n"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := "# B\n" + gb + "\nG\n" + ge + "\nhand-written\n" + rb + "\nR\n" + re + "\n"; string(got) != want {
		t.Fatalf("got\n%s", got)
	}
}

func TestSpreadAndUnits(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{spread(Summary{Min: 1, Median: 1.234, Max: 2, Runs: 5}, true, plain), "1.23 (1.00–2.00)"},
		{spread(Summary{Min: 3, Median: 3, Max: 3, Runs: 5}, true, plain), "3.00"},
		{spread(Summary{}, false, plain), "-"},
		{Millis(0.0005), "0.500 ms"},
		{Millis(0.0123), "12.30 ms"},
		{Millis(0.8), "800 ms"},
		{Millis(0), "-"},
	} {
		if c.got != c.want {
			t.Errorf("got %q; want %q", c.got, c.want)
		}
	}
}

func TestRenderGoals(t *testing.T) {
	levels := []*Level{
		level(1, map[string]map[string][]float64{Relay: {PushesPerSecond: {3, 3, 3}}, PushgatewayUnchecked: {PushesPerSecond: {1, 1, 1}}}),
		level(10, map[string]map[string][]float64{Relay: {PushesPerSecond: {1, 1, 2}}, PushgatewayUnchecked: {PushesPerSecond: {1, 1, 1}}}),
	}
	goals := []Goal{
		{Name: "throughput", Of: "relay/pushes_per_second", Over: "pushgateway-unchecked/pushes_per_second", AtLeast: f64(1.5)},
		{Name: "only at 10", Of: "relay/pushes_per_second", Over: "pushgateway-unchecked/pushes_per_second", AtLeast: f64(1), N: []int{10}},
		{Name: "at 500", Of: "relay/pushes_per_second", Over: "pushgateway-unchecked/pushes_per_second", AtLeast: f64(1), N: []int{500}},
	}
	res := &Results{Levels: levels, Goals: Evaluate(goals, levels), Settings: Settings{Repeats: 3}}
	got := RenderGoals(res)
	for _, want := range []string{
		"| goal | target | N=1 | N=10 | met |\n|---|---|---:|---:|---|\n",
		"| throughput | >= 1.5 | 3.00 | **1.00 (1.00–2.00)** | **no** |\n",
		"| only at 10 | >= 1 | not a goal | 1.00 (1.00–2.00) | yes |\n",
		"| at 500 | >= 1 | not a goal | not a goal | not measured at N=500 |\n",
		"over 3 repetitions",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("goals table lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderResultsNamesEveryServer(t *testing.T) {
	lv := level(1, map[string]map[string][]float64{
		Relay:                {PushesPerSecond: {400}, CPUSecondsPerPush: {0.002}, ScrapeSeconds("text"): {0.001}, ScrapeBytes("text"): {170000}},
		Limit:                {CPUSecondsPerPush: {0.001}, ScrapeSeconds("text"): {0.0005}},
		PushgatewayUnchecked: {PushesPerSecond: {800}},
		Pushgateway:          {PushesPerSecond: {500}},
	})
	lv.Servers[Pushgateway].Reached = false
	got := RenderResults(&Results{Levels: []*Level{lv}, Settings: Settings{Repeats: 1, Args: map[string]string{Relay: "serve --group.ttl=0"}}})
	for _, want := range []string{
		"| 1 | 400 | 800 | not reached | - | 0.50 | - |", // throughput: relay / unchecked
		"| 1 | 2.00 ms | 1.00 ms | - | not reached | 2.00 |",
		"| 1 | 170000 | 1.00 ms | 0.500 ms | 2.00 |",
		"relay `serve --group.ttl=0`",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("results lack %q:\n%s", want, got)
		}
	}
}

func TestBusyMachineIsSaid(t *testing.T) {
	res := &Results{Machine: Machine{NProc: 2, LoadStart: "0.50 0.40 0.30", LoadEnd: "1.10 0.50 0.30"},
		Levels: []*Level{{N: 1, LoadAvg: []string{"0.90 0.5 0.3", "bad"}}}, Settings: Settings{Repeats: 1}}
	if l, ok := MaxLoad(res); !ok || l != 1.1 {
		t.Fatalf("MaxLoad = %v, %v", l, ok)
	}
	if strings.Contains(RenderGoals(res), "busy machine") {
		t.Error("a quiet run called busy")
	}
	res.Levels[0].LoadAvg = append(res.Levels[0].LoadAvg, "12.08 13.04 12.99")
	if got := RenderGoals(res); !strings.Contains(got, "**A busy machine**: the 1-minute load average reached 12.1 on 2 cores") {
		t.Errorf("a busy run not said:\n%s", got)
	}
	if _, ok := MaxLoad(&Results{}); ok {
		t.Error("MaxLoad of nothing")
	}
	// With the other processes' CPU measured, the verdict is theirs: the run's own load does not
	// make a machine busy.
	quiet := 0.03
	res.Machine.OtherCPU = &quiet
	if got := RenderGoals(res); strings.Contains(got, "busy machine") || !strings.Contains(got, "other processes than the run's took 3 % of the machine's CPU time;") {
		t.Errorf("a quiet run with a high load average:\n%s", got)
	}
	busy := 0.25
	res.Machine.OtherCPU = &busy
	if got := RenderGoals(res); !strings.Contains(got, "**A busy machine**: other processes than the run's took 25 % of the machine's CPU time during this run") {
		t.Errorf("a busy run not said:\n%s", got)
	}
}

func TestOtherCPU(t *testing.T) {
	start := CPUSample{Busy: 10 * time.Second, Own: 2 * time.Second, ok: true}
	end := CPUSample{Busy: 30 * time.Second, Own: 20 * time.Second, ok: true}
	// 20 s busy in 10 s on 2 cores, 18 s of them the run's: others took 2 s of 20.
	if got, ok := OtherCPU(start, end, 10*time.Second, 2); !ok || got < 0.0999 || got > 0.1001 {
		t.Errorf("OtherCPU = %v, %v; want 0.1", got, ok)
	}
	if _, ok := OtherCPU(CPUSample{}, end, 10*time.Second, 2); ok {
		t.Error("OtherCPU of a failed sample")
	}
	// The real thing: CPU this process burns is the run's own, and the machine's busy time too.
	s0 := SampleCPU()
	deadline := time.Now().Add(10 * time.Second)
	s1 := s0
	for s1.Own-s0.Own < 100*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("100 ms of CPU not counted as the run's own within 10 s: %v -> %v", s0, s1)
		}
		for i := 0; i < 1e6; i++ {
			sink += i
		}
		s1 = SampleCPU()
	}
	if !s1.ok || s1.Busy-s0.Busy < s1.Own-s0.Own-50*time.Millisecond {
		t.Errorf("the machine's busy time grew %v while the run's own grew %v", s1.Busy-s0.Busy, s1.Own-s0.Own)
	}
}

var sink int
