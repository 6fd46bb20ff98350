// Package store holds pushed metric groups in memory and serves them as one exposition.
//
// A group is what one push URL addresses (its grouping key: job plus optional labels). Pushes are
// validated and pre-rendered by Prepare outside the store's lock, so a push costs in proportion to
// its own size, and a scrape copies pre-rendered bytes. A group that has not pushed for the TTL
// leaves the exposition (its series go stale in Prometheus); its health series stay for
// ForgetAfter more, then the group is forgotten.
package store

import (
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Store is what the HTTP layer needs from storage. MemoryStore is the implementation.
type Store interface {
	// Apply stores a prepared push. With replace (PUT) the group's families are all replaced;
	// without (POST) only the families the push carries. A refused push changes nothing.
	Apply(p *Push, replace bool) error
	// Delete removes the group and reports whether it existed.
	Delete(k Key) bool
	// RecordFailure notes a refused push for the group's health series, if the group exists.
	RecordFailure(k Key, reason string)
	// Groups describes every group, fresh or expired, sorted by key.
	Groups() []GroupStatus
	// WriteText, WriteProto and Gather expose every fresh group's samples merged by family with
	// extra (the relay's own metrics, sorted by name) and the groups' health series.
	WriteText(w io.Writer, extra []*dto.MetricFamily) error
	WriteProto(w io.Writer, extra []*dto.MetricFamily) error
	Gather(extra []*dto.MetricFamily) ([]*dto.MetricFamily, error)
}

// Options configure a MemoryStore. The zero value keeps groups forever without limits.
type Options struct {
	// TTL after its last push at which a group leaves the exposition; 0 keeps groups forever.
	TTL time.Duration
	// ForgetAfter is how long an expired group's health series stay before it is forgotten.
	ForgetAfter time.Duration
	// MaxGroups and MaxSeriesPerGroup bound memory; 0 means no limit.
	MaxGroups, MaxSeriesPerGroup int
	// Reserved families: the relay's own metrics. A push may add samples to one of them only with
	// the same type; the family's HELP is the relay's.
	Reserved []*dto.MetricFamily
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// GroupStatus describes one group for the status page and the health series.
type GroupStatus struct {
	Key         Key
	LastPush    time.Time
	LastFailure time.Time
	LastError   string
	Pushes      uint64
	Failures    uint64
	Series      int
	Fresh       bool
	// ExpiresAt is when the group leaves the exposition (zero without TTL).
	ExpiresAt time.Time
}

type group struct {
	key         Key
	parts       map[string]*part
	series      int
	lastPush    time.Time
	lastFailure time.Time
	lastError   string
	pushes      uint64
	failures    uint64
	expired     bool             // samples dropped; health kept until forgotten
	labels      []*dto.LabelPair // grouping labels as the health series carry them
}

// family is one metric family across every group that carries it.
type family struct {
	name        string
	typ         dto.MetricType
	help        string
	reserved    bool
	parts       map[*group]*part
	textHeader  []byte
	protoHeader []byte
}

// MemoryStore is the in-memory Store. It is safe for concurrent use.
type MemoryStore struct {
	opts Options
	now  func() time.Time

	mu       sync.RWMutex
	groups   map[string]*group
	families map[string]*family
	series   map[uint64]*group        // every stored series' hash and its owner
	names    atomic.Pointer[[]string] // sorted family names; nil when the set of families changed
	expired  uint64                   // groups expired so far
}

// New returns an empty MemoryStore.
func New(opts Options) *MemoryStore {
	s := &MemoryStore{
		opts:     opts,
		now:      opts.Now,
		groups:   map[string]*group{},
		families: map[string]*family{},
		series:   map[uint64]*group{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, mf := range opts.Reserved {
		f := newFamily(mf.GetName(), mf.GetType(), mf.GetHelp())
		f.reserved = true
		s.families[f.name] = f
	}
	for _, h := range healthFamilies {
		f := newFamily(h.name, h.typ, h.help)
		f.reserved = true
		s.families[h.name] = f
	}
	return s
}

func newFamily(name string, typ dto.MetricType, help string) *family {
	f := &family{name: name, typ: typ, help: help, parts: map[*group]*part{}}
	f.textHeader = textHeader(name, typ, help)
	f.protoHeader = protoHeader(name, typ, help)
	return f
}

// Apply implements Store.
func (s *MemoryStore) Apply(p *Push, replace bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)

	g := s.groups[p.Key.id]
	if g == nil && s.opts.MaxGroups > 0 && len(s.groups) >= s.opts.MaxGroups {
		return &Error{Kind: KindFull, Msg: sprintf("the relay already holds %d groups (--store.max-groups); delete a group or raise the limit", len(s.groups))}
	}
	// Check everything before changing anything.
	series := p.series
	if !replace && g != nil {
		series = g.series
		for _, pt := range p.families {
			if old := g.parts[pt.name]; old != nil {
				series -= old.series
			}
			series += pt.series
		}
	}
	if max := s.opts.MaxSeriesPerGroup; max > 0 && series > max {
		return &Error{Kind: KindTooLarge, Msg: sprintf("group %s would hold %d series, more than %d (--group.max-series)", p.Key, series, max)}
	}
	for _, pt := range p.families {
		f := s.families[pt.name]
		if f == nil || f.typ == pt.typ {
			continue
		}
		if f.reserved {
			return &Error{Kind: KindConflict, Msg: sprintf("metric family %q is one of the relay's own metrics, of type %s; push it as %s or rename it", pt.name, typeName(f.typ), typeName(f.typ))}
		}
		for other := range f.parts {
			if other != g {
				return &Error{Kind: KindConflict, Msg: sprintf("metric family %q is pushed as %s, but group %s already pushed it as %s", pt.name, typeName(pt.typ), other.key, typeName(f.typ))}
			}
		}
	}
	for _, pt := range p.families {
		for _, h := range pt.hashes {
			if owner := s.series[h]; owner != nil && owner != g {
				return &Error{Kind: KindConflict, Msg: sprintf("metric family %q: a series of this push is already exposed by group %s (give the groups distinct labels)", pt.name, owner.key)}
			}
		}
	}

	if g == nil {
		g = &group{key: p.Key, parts: map[string]*part{}}
		g.labels, _ = mergeLabels(p.Key, "", dto.MetricType_GAUGE, nil)
		s.groups[p.Key.id] = g
	}
	if replace || g.expired {
		for _, old := range g.parts {
			s.removePartLocked(g, old)
		}
	} else {
		for _, pt := range p.families {
			if old := g.parts[pt.name]; old != nil {
				s.removePartLocked(g, old)
			}
		}
	}
	for _, pt := range p.families {
		s.addPartLocked(g, pt)
	}
	g.expired = false
	g.lastPush = now
	g.pushes++
	return nil
}

func (s *MemoryStore) addPartLocked(g *group, pt *part) {
	f := s.families[pt.name]
	if f == nil {
		f = newFamily(pt.name, pt.typ, pt.help)
		s.families[pt.name] = f
		s.names.Store(nil)
	} else if len(f.parts) == 0 && !f.reserved && (f.typ != pt.typ || f.help != pt.help) {
		*f = *newFamily(pt.name, pt.typ, pt.help)
	}
	f.parts[g] = pt
	g.parts[pt.name] = pt
	g.series += pt.series
	for _, h := range pt.hashes {
		s.series[h] = g
	}
}

func (s *MemoryStore) removePartLocked(g *group, pt *part) {
	f := s.families[pt.name]
	delete(f.parts, g)
	if len(f.parts) == 0 && !f.reserved {
		delete(s.families, pt.name)
		s.names.Store(nil)
	}
	delete(g.parts, pt.name)
	g.series -= pt.series
	for _, h := range pt.hashes {
		if s.series[h] == g {
			delete(s.series, h)
		}
	}
}

// Delete implements Store.
func (s *MemoryStore) Delete(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[k.id]
	if g == nil {
		return false
	}
	s.dropLocked(g)
	return true
}

func (s *MemoryStore) dropLocked(g *group) {
	for _, pt := range g.parts {
		s.removePartLocked(g, pt)
	}
	delete(s.groups, g.key.id)
}

// RecordFailure implements Store.
func (s *MemoryStore) RecordFailure(k Key, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[k.id]; g != nil {
		g.lastFailure = s.now()
		g.lastError = reason
		g.failures++
	}
}

func (s *MemoryStore) fresh(g *group, now time.Time) bool {
	return !g.expired && (s.opts.TTL <= 0 || now.Sub(g.lastPush) <= s.opts.TTL)
}

// Sweep drops the samples of groups that went quiet and forgets long-expired groups. Exposition
// never shows an expired group's samples even before a sweep; sweeping frees their memory. It
// reports how many groups expired.
func (s *MemoryStore) Sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sweepLocked(s.now())
}

func (s *MemoryStore) sweepLocked(now time.Time) int {
	if s.opts.TTL <= 0 {
		return 0
	}
	n := 0
	for _, g := range s.groups {
		if !g.expired && !s.fresh(g, now) {
			for _, pt := range g.parts {
				s.removePartLocked(g, pt)
			}
			g.expired = true
			s.expired++
			n++
		}
		if g.expired && now.Sub(g.lastPush) > s.opts.TTL+s.opts.ForgetAfter {
			s.dropLocked(g)
		}
	}
	return n
}

// ExpiredTotal is how many groups have expired since the store was created.
func (s *MemoryStore) ExpiredTotal() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.expired
}

// Groups implements Store.
func (s *MemoryStore) Groups() []GroupStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	out := make([]GroupStatus, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, s.statusLocked(g, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.id < out[j].Key.id })
	return out
}

func (s *MemoryStore) statusLocked(g *group, now time.Time) GroupStatus {
	st := GroupStatus{
		Key: g.key, LastPush: g.lastPush, LastFailure: g.lastFailure, LastError: g.lastError,
		Pushes: g.pushes, Failures: g.failures, Fresh: s.fresh(g, now),
	}
	if st.Fresh {
		st.Series = g.series
	}
	if s.opts.TTL > 0 {
		st.ExpiresAt = g.lastPush.Add(s.opts.TTL)
	}
	return st
}

// sortedNamesLocked returns the stored family names in order, rebuilding the cache when the set
// of families changed. Callers hold at least the read lock; the rebuild is guarded separately.
func (s *MemoryStore) sortedNamesLocked() []string {
	if names := s.names.Load(); names != nil {
		return *names
	}
	names := make([]string, 0, len(s.families))
	for n := range s.families {
		names = append(names, n)
	}
	sort.Strings(names)
	s.names.Store(&names)
	return names
}
