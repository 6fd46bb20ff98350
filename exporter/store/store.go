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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
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
	// The labels pre-rendered for the health series: `{a="b",...}` and LabelPair fields.
	textLabels, protoLabels []byte
}

// family is one metric family across every group that carries it.
type family struct {
	name        string
	typ         dto.MetricType
	help        string
	reserved    bool
	health      int     // index in healthFamilies, -1 for other families
	parts       []entry // sorted by group key, so a scrape writes groups in a stable order
	textHeader  []byte
	protoHeader []byte
}

// entry is one group's part of a family.
type entry struct {
	g  *group
	pt *part
}

// find returns the index of g's entry in f.parts, or where it would be inserted.
func (f *family) find(g *group) (int, bool) {
	i := sort.Search(len(f.parts), func(i int) bool { return f.parts[i].g.key.id >= g.key.id })
	return i, i < len(f.parts) && f.parts[i].g == g
}

// MemoryStore is the in-memory Store. It is safe for concurrent use.
type MemoryStore struct {
	opts Options
	now  func() time.Time

	mu       sync.RWMutex
	groups   map[string]*group
	order    []*group // the groups sorted by key
	families map[string]*family
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
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, mf := range opts.Reserved {
		f := newFamily(mf.GetName(), mf.GetType(), mf.GetHelp())
		f.reserved = true
		s.families[f.name] = f
	}
	for i, h := range healthFamilies {
		f := newFamily(h.name, h.typ, h.help)
		f.reserved, f.health = true, i
		s.families[h.name] = f
	}
	return s
}

func newFamily(name string, typ dto.MetricType, help string) *family {
	f := &family{name: name, typ: typ, help: help, health: -1}
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
		for _, e := range f.parts {
			if e.g != g {
				return &Error{Kind: KindConflict, Msg: sprintf("metric family %q is pushed as %s, but group %s already pushed it as %s", pt.name, typeName(pt.typ), e.g.key, typeName(f.typ))}
			}
		}
	}
	if err := s.checkSeriesLocked(p, g); err != nil {
		return err
	}

	if g == nil {
		g = newGroup(p.Key)
		s.groups[p.Key.id] = g
		i := sort.Search(len(s.order), func(i int) bool { return s.order[i].key.id >= g.key.id })
		s.order = slices.Insert(s.order, i, g)
	}
	if replace || g.expired {
		// Families the push does not carry go; the others are replaced in place below.
		for name, old := range g.parts {
			if !p.has(name) {
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

// newGroup returns an empty group with its labels rendered for the health series.
func newGroup(k Key) *group {
	g := &group{key: k, parts: map[string]*part{}}
	g.labels, _ = mergeLabels(k, "", dto.MetricType_GAUGE, nil)
	var b []byte
	b = append(b, '{')
	for i, lp := range g.labels {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, lp.GetName()...)
		b = append(b, '=', '"')
		b = appendEscaped(b, lp.GetValue())
		b = append(b, '"')
	}
	g.textLabels = append(b, '}')
	for _, lp := range g.labels {
		g.protoLabels = protowire.AppendTag(g.protoLabels, 1, protowire.BytesType)
		g.protoLabels = protowire.AppendVarint(g.protoLabels, uint64(labelPairSize(lp.GetName(), lp.GetValue())))
		g.protoLabels = appendLabelPair(g.protoLabels, lp.GetName(), lp.GetValue())
	}
	return g
}

// addPartLocked stores pt as g's part of its family, replacing g's previous part of it.
func (s *MemoryStore) addPartLocked(g *group, pt *part) {
	f := s.families[pt.name]
	if f == nil {
		f = newFamily(pt.name, pt.typ, pt.help)
		s.families[pt.name] = f
		s.names.Store(nil)
	} else if !f.reserved && (f.typ != pt.typ || f.help != pt.help) && (len(f.parts) == 0 || (len(f.parts) == 1 && f.parts[0].g == g)) {
		// Nobody else exposes the family: it takes the push's type and HELP.
		parts := f.parts
		*f = *newFamily(pt.name, pt.typ, pt.help)
		f.parts = parts
	}
	// Share the family's strings: the push's copies (from decoding its body) can be freed.
	if pt.name == f.name {
		pt.name = f.name
	}
	if pt.help == f.help {
		pt.help = f.help
	}
	if i, ok := f.find(g); ok {
		g.series -= f.parts[i].pt.series
		f.parts[i].pt = pt
	} else {
		f.parts = slices.Insert(f.parts, i, entry{g, pt})
	}
	g.parts[pt.name] = pt
	g.series += pt.series
}

func (s *MemoryStore) removePartLocked(g *group, pt *part) {
	f := s.families[pt.name]
	if i, ok := f.find(g); ok {
		f.parts = slices.Delete(f.parts, i, i+1)
	}
	if len(f.parts) == 0 && !f.reserved {
		delete(s.families, pt.name)
		s.names.Store(nil)
	}
	delete(g.parts, pt.name)
	g.series -= pt.series
}

// checkSeriesLocked refuses a push to g that carries a series another group already exposes.
// Every series carries its group's grouping labels, so only groups whose keys agree on every
// label they share can expose the same series (a push of {job="a"} with a series labelled
// instance="x" and the group {job="a",instance="x"}); groups with distinct instances never
// need comparing.
func (s *MemoryStore) checkSeriesLocked(p *Push, g *group) error {
	var pushed map[uint64]string
	for _, other := range s.order {
		if other == g || len(other.parts) == 0 || !compatible(other.key, p.Key) {
			continue
		}
		if pushed == nil {
			pushed = make(map[uint64]string, p.hashes())
			for _, pt := range p.families {
				for _, h := range pt.hashes {
					pushed[h] = pt.name
				}
			}
		}
		for _, opt := range other.parts {
			for _, h := range opt.hashes {
				if name, ok := pushed[h]; ok {
					return &Error{Kind: KindConflict, Msg: sprintf("metric family %q: a series of this push is already exposed by group %s (give the groups distinct labels)", name, other.key)}
				}
			}
		}
	}
	return nil
}

// compatible reports whether two keys agree on the value of every label they both have.
func compatible(a, b Key) bool {
	i, j := 0, 0
	for i < len(a.labels) && j < len(b.labels) {
		switch {
		case a.labels[i].Name < b.labels[j].Name:
			i++
		case a.labels[i].Name > b.labels[j].Name:
			j++
		default:
			if a.labels[i].Value != b.labels[j].Value {
				return false
			}
			i++
			j++
		}
	}
	return true
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
	if i, ok := slices.BinarySearchFunc(s.order, g.key.id, func(o *group, id string) int { return strings.Compare(o.key.id, id) }); ok {
		s.order = slices.Delete(s.order, i, i+1)
	}
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
