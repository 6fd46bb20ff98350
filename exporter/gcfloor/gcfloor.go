// Package gcfloor paces Go's garbage collector with a floor under its heap goal.
//
// GOGC sets the heap goal in proportion to the live heap: at GOGC=50 the heap may grow to 1.5
// times what the last collection found live. That keeps a large heap small, but a small heap
// collects very often: Go's own minimum goal, 4 MiB at GOGC=100, scales with GOGC too (2 MiB at
// 50), and a process that allocates a few hundred kilobytes per request then spends most of its
// CPU collecting. Start keeps the proportional goal for a heap past the floor, and below it lets
// the heap grow to the floor before the next collection, by raising the GC percentage after each
// collection (read from runtime/metrics: no stop-the-world).
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// MaxPercent bounds the percentage Start sets, however small the live heap.
const MaxPercent = 1000

const liveMetric = "/gc/heap/live:bytes"

// pacer holds the policy; each collection calls adjust through a cleanup.
type pacer struct {
	percent int    // the GC percentage past the floor
	floor   uint64 // the heap goal's floor, in bytes
	stopped atomic.Bool
	sample  [1]metrics.Sample
}

// Start sets the GC percentage to percent and keeps the heap goal at floor bytes at least, until
// the returned function is called, which restores percent. A floor of zero, or a negative
// percent (collection off), only sets the percentage.
func Start(percent int, floor uint64) (stop func()) {
	debug.SetGCPercent(percent)
	if floor == 0 || percent < 0 {
		return func() {}
	}
	p := &pacer{percent: percent, floor: floor}
	p.sample[0].Name = liveMetric
	p.arm()
	return func() {
		p.stopped.Store(true)
		debug.SetGCPercent(percent)
	}
}

// Percent returns the percentage that keeps a heap of live bytes growing to floor at least.
func Percent(percent int, floor, live uint64) int {
	if live == 0 || live >= floor {
		return percent
	}
	// Go's goal is live + live*p/100 (stacks and globals aside): p = (floor-live)*100/live.
	p := (floor - live) * 100 / live
	if p > MaxPercent {
		return MaxPercent
	}
	return max(percent, int(p))
}

// sentinel is an object nothing refers to, whose cleanup runs after the collection that finds
// it unreachable. It holds a pointer so that it is not a tiny allocation, whose cleanups may be
// delayed by other objects sharing its block.
type sentinel struct{ _ *byte }

func (p *pacer) arm() {
	runtime.AddCleanup(&sentinel{}, (*pacer).adjust, p)
}

func (p *pacer) adjust() {
	if p.stopped.Load() {
		return
	}
	metrics.Read(p.sample[:])
	if p.sample[0].Value.Kind() == metrics.KindUint64 {
		debug.SetGCPercent(Percent(p.percent, p.floor, p.sample[0].Value.Uint64()))
	}
	p.arm()
}
