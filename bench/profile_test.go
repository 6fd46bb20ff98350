package bench

import (
	"context"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/exporter/relay"
)

func TestTrimTop(t *testing.T) {
	in := "File: x\nType: cpu\nActive filters:\n   focus=y\nShowing nodes accounting for 1s, 50% of 2s total\n      flat  flat%\n   1s 50% f\n\n"
	if got := trimTop(in); got != "Showing nodes accounting for 1s, 50% of 2s total\n      flat  flat%\n   1s 50% f\n" {
		t.Fatalf("trimTop = %q", got)
	}
}

// A short profile of the real relay: both phases, both kinds, focused on the relay's code.
func TestProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("profiles a relay for a second")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command for go tool pprof")
	}
	cfg := ProfileConfig{Payload: payload(t), Levels: []int{2}, Duration: 300 * time.Millisecond, Concurrency: 2, OutDir: t.TempDir(), Go: goCmd, NodeCount: 5,
		Relay: relay.Config{MaxBodyBytes: relay.DefaultMaxBodyBytes, Limits: relay.DefaultLimits(math.MaxInt64)}}
	lists, err := Profile(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) != 6 {
		t.Fatalf("%d top lists; want push and both scrapes, CPU and allocations", len(lists))
	}
	for _, l := range lists {
		if !strings.HasPrefix(l.Top, "Showing nodes accounting for") || l.N != 2 {
			t.Errorf("%s %s: %q", l.Op, l.Kind, l.Top)
		}
	}
	doc := RenderProfiles(lists, "today", cfg.Duration)
	if !strings.Contains(doc, "push, N=2, CPU (`push-n2.cpu.pprof`)") || !strings.Contains(doc, "scrape (text), N=2, allocated bytes") ||
		!strings.Contains(doc, "scrape (protobuf), N=2, CPU (`scrape-proto-n2.cpu.pprof`)") {
		t.Errorf("rendered:\n%s", doc)
	}
}
