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
	"sync"
)

// MaxPercent bounds the percentage Start sets, however small the live heap.
const MaxPercent = 1000

// minGoal is Go's minimum heap goal at a GC percentage of 100; it scales with the percentage.
const minGoal = 4 << 20

// What adjust reads after each collection: the live heap, and the stacks and globals the goal
// also scales by the percentage.
var sampled = [...]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// pacer holds the policy; each collection calls adjust through a cleanup.
type pacer struct {
	percent int        // the GC percentage past the floor
	floor   uint64     // the heap goal's floor, in bytes
	mu      sync.Mutex // orders adjust's percentage before stop's: stop's is the last
	stopped bool
	sample  [len(sampled)]metrics.Sample
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
	for i, name := range sampled {
		p.sample[i].Name = name
	}
	p.arm()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.stopped = true
		debug.SetGCPercent(percent)
	}
}

// Percent returns the percentage that keeps a heap of live bytes growing to floor at least,
// roots being the bytes of stacks and globals the collector scanned.
func Percent(percent int, floor, live, roots uint64) int {
	if live == 0 || live >= floor {
		return percent
	}
	// Go's goal is live + (live+roots)*p/100: p = (floor-live)*100/(live+roots). It is also
	// minGoal*p/100 at least, which alone passes the floor past p = floor*100/minGoal.
	p := min((floor-live)*100/(live+roots), floor*100/minGoal, MaxPercent)
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	metrics.Read(p.sample[:])
	var v [len(sampled)]uint64
	for i, s := range p.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			p.arm()
			return
		}
		v[i] = s.Value.Uint64()
	}
	debug.SetGCPercent(Percent(p.percent, p.floor, v[0], v[1]+v[2]))
	p.arm()
}
