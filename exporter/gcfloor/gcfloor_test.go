package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		percent            int
		floor, live, roots uint64
		want               int
	}{
		{50, 16 * mib, 0, 0, 50},              // nothing measured yet
		{50, 16 * mib, 4 * mib, 0, 300},       // 4 + 4*3 = 16
		{50, 16 * mib, 4 * mib, 2 * mib, 200}, // 4 + (4+2)*2 = 16: stacks and globals count
		{50, 16 * mib, 8 * mib, 0, 100},       // 8 + 8 = 16
		{50, 16 * mib, 12 * mib, 0, 50},       // 12*1.5 = 18 > 16: the proportional goal
		{50, 16 * mib, 32 * mib, 0, 50},       // past the floor
		{50, 16 * mib, 1024, 0, 400},          // Go's minimum goal, 4 MiB*4, is the floor
		{50, 1024 * mib, 1024, 0, MaxPercent}, // bounded
		{200, 16 * mib, 8 * mib, 0, 200},      // never below the percentage asked for
	} {
		if got := Percent(c.percent, c.floor, c.live, c.roots); got != c.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", c.percent, c.floor, c.live, c.roots, got, c.want)
		}
	}
}

// gogc reads the GC percentage in force.
func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitGOGC collects until the percentage in force satisfies ok, or fails after a deadline: the
// pacer adjusts in the cleanup goroutine, after a collection.
func waitGOGC(t *testing.T, what string, ok func(uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d after 10 s of collections, want %s", gogc(), what)
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup goroutine run between collections
	}
}

func TestStartRaisesThePercentageOfASmallHeapOnly(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const floor = 256 << 20
	stop := Start(50, floor)
	// This test's heap is a few MiB: the floor is more than 10 times it.
	waitGOGC(t, "the maximum for a heap far below the floor", func(p uint64) bool { return p == MaxPercent })

	// A live heap past the floor gets the percentage asked for.
	big := make([]*[1 << 20]byte, 300)
	for i := range big {
		big[i] = new([1 << 20]byte)
	}
	waitGOGC(t, "50 for a heap past the floor", func(p uint64) bool { return p == 50 })
	runtime.KeepAlive(big)
	big = nil

	// Stopped, the pacer leaves the percentage asked for, whatever the heap.
	stop()
	for range 3 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := gogc(); p != 50 {
		t.Fatalf("GOGC is %d after stop, want 50", p)
	}
}

func TestStartWithoutFloorOnlySetsThePercentage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := Start(70, 0)
	defer stop()
	runtime.GC()
	if p := gogc(); p != 70 {
		t.Fatalf("GOGC is %d, want 70", p)
	}
}

// TestHeapGoalStaysNearTheFloor: the floor is the heap goal's, not only the proportional part's.
// Go's goal scales the stacks and globals by the percentage too, and its minimum goal (4 MiB at
// GOGC=100) scales with it: 40 MiB at MaxPercent, far past a 16 MiB floor.
func TestHeapGoalStaysNearTheFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const floor = 16 << 20
	stop := Start(50, floor)
	defer stop()
	// This test's heap is far below the floor: the pacer raises the percentage.
	waitGOGC(t, "raised for a heap below the floor", func(p uint64) bool { return p > 50 })
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	goal, live := s[0].Value.Uint64(), s[1].Value.Uint64()
	if goal > floor+floor/8 {
		t.Errorf("heap goal %d MiB at GOGC=%d (live heap %d KiB), want the floor, %d MiB", goal>>20, gogc(), live>>10, floor>>20)
	}
}
