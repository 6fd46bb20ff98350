// Package store holds pushed metric groups in memory and serves them as one exposition.
//
// A group is what one push URL addresses (its grouping key: job plus optional labels). The store
// owns a push whole: Push validates the families, renders them (outside the store's lock, so a
// push costs in proportion to its own size), applies the limits and the byte budget, stores
// them, and records a refusal. A scrape copies pre-rendered bytes. A group that has not pushed
// for the TTL leaves the exposition (its series go stale in Prometheus); its health series stay
// for ForgetAfter more, then the group is forgotten.
package store

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Store is what the HTTP layer and the pull sources need from storage. MemoryStore is the
// implementation.
type Store interface {
	// Push validates, renders and stores one push, within the store's limits and byte budget. A
	// refused push changes nothing stored: it is recorded (see RecordRefusal) and returned as an
	// *Error. Push keeps nothing of req's families or bytes (what it stores it copies): the
	// caller may reuse them once it returns.
	Push(req PushRequest) (PushResult, error)
	// RecordRefusal notes a push refused before it reached Push (a URL or body that did not
	// decode), for the group's health series or, for an unknown group, the recent refusals.
	RecordRefusal(k Key, client string, err error)
	// Delete removes the group and reports whether it existed.
	Delete(k Key) bool
	// Groups describes every group, fresh or expired, sorted by key.
	Groups() []GroupStatus
	// Usage tells how much of its limits the store uses, and the recent refusals of pushes to
	// groups it does not hold.
	Usage() Usage
	// WriteText, WriteProto and WriteOpenMetrics expose every fresh group's samples merged by
	// family with extra (the relay's own metrics, sorted by name) and the groups' health series.
	WriteText(w io.Writer, extra []*dto.MetricFamily) error
	WriteProto(w io.Writer, extra []*dto.MetricFamily) error
	WriteOpenMetrics(w io.Writer, extra []*dto.MetricFamily, format expfmt.Format) error
}

// PushRequest is one push for the group key: its families, decoded (Families) or encoded
// (Encoded), one or the other.
type PushRequest struct {
	Key      Key
	Families []*dto.MetricFamily
	// Encoded holds the families as length-delimited protobuf MetricFamily messages (the
	// format client_golang pushes): the store reads them without decoding them into objects,
	// and keeps nothing of these bytes.
	Encoded []byte
	// Replace is PUT: the group's families are all replaced. Without it (POST) only the families
	// the push carries are.
	Replace bool
	// Client says who pushed (a remote address, or "pull source <name>"): shown on the status
	// page with the group and with refusals.
	Client string
}

// PushResult is what an accepted push stored.
type PushResult struct {
	Series int   // series the push carries, as Prometheus counts them
	Bytes  int64 // bytes its rendered samples take in the store
}

// Limits bound what the store holds. A zero field means no limit.
type Limits struct {
	// MaxGroups bounds the groups held. Expired groups never block a new one: the longest
	// expired is forgotten to make room.
	MaxGroups int
	// MaxSeriesPerGroup bounds one group's series (histogram buckets and summary quantiles
	// count, as Prometheus counts series).
	MaxSeriesPerGroup int
	// MaxBytes is the byte budget: the memory every group's rendered samples and bookkeeping
	// take together. A push that would pass it is refused.
	MaxBytes int64
	// LabelLimit bounds the labels of one series, its name and grouping labels included;
	// LabelNameLengthLimit and LabelValueLengthLimit bound each label's name and value (the
	// metric name counts as a value), as Prometheus's scrape limits of the same names do.
	LabelLimit            int
	LabelNameLengthLimit  int
	LabelValueLengthLimit int
	// HelpLengthLimit bounds a family's HELP text.
	HelpLengthLimit int
}

// Options configure a MemoryStore. The zero value keeps groups forever without limits.
type Options struct {
	// TTL after its last push at which a group leaves the exposition; 0 keeps groups forever.
	TTL time.Duration
	// ForgetAfter is how long an expired group's health series stay before it is forgotten.
	ForgetAfter time.Duration
	Limits      Limits
	// LimitNames name, for the pusher, the setting that raises each limit (a flag of the
	// relay's, say); a refusal that hits the limit ends with it in parentheses.
	LimitNames map[Limit]string
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
	LastError   string // bounded excerpt
	LastClient  string // who pushed last, successfully or not
	Pushes      uint64
	Failures    uint64
	Series      int
	Bytes       int64
	Fresh       bool
	// ExpiresAt is when the group leaves the exposition (zero without TTL).
	ExpiresAt time.Time
}

// Usage is how much of its limits the store uses.
type Usage struct {
	Groups, FreshGroups int
	Series              int
	Bytes               int64
	Limits              Limits
	// Refusals are the latest pushes refused for groups the store does not hold (newest first):
	// they have no row of their own on the status page.
	Refusals []Refusal
	// Expired counts groups that expired since the store was created.
	Expired uint64
}

// Refusal is one refused push to a group the store does not hold.
type Refusal struct {
	Time   time.Time
	Group  string // the key's excerpt, or "" when the URL did not name a group
	Client string
	Error  string // bounded excerpt
}

// maxErrorText bounds the refusal messages the store keeps (per group and in Refusals).
const maxErrorText = 512

// maxRefusals is how many refusals of unknown groups the store remembers.
const maxRefusals = 16

type group struct {
	key         Key
	parts       []*part // sorted by name
	series      int
	bytes       int64 // what the group takes of the byte budget
	lastPush    time.Time
	lastFailure time.Time
	lastError   string
	lastClient  string
	pushes      uint64
	failures    uint64
	expired     bool // samples dropped; health kept until forgotten
	// The grouping labels (instance="" added if missing) pre-rendered for the health series:
	// `{a="b",...}` and LabelPair fields.
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

// locate is find, trying first the index where g's previous part of the family was stored
// (hint, or -1): it is still there unless groups came or went in the family since.
func (f *family) locate(g *group, hint int) (int, bool) {
	if hint >= 0 && hint < len(f.parts) && f.parts[hint].g == g {
		return hint, true
	}
	return f.find(g)
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
	bytes    atomic.Int64             // the budget used; written under mu, read without it too
	refusals []Refusal                // ring of the latest refusals of unknown groups
	nextRef  int
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

// limitError is a refusal for hitting limit l, naming the setting that raises it.
func (s *MemoryStore) limitError(kind Kind, l Limit, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if name := s.opts.LimitNames[l]; name != "" {
		msg += " (" + name + ")"
	}
	return &Error{Kind: kind, Limit: l, Msg: msg}
}

// Push implements Store.
func (s *MemoryStore) Push(req PushRequest) (PushResult, error) {
	p, err := s.prepare(req.Key, req.Families, req.Encoded)
	if err == nil {
		err = s.apply(p, req, s.now())
	}
	if err != nil {
		s.RecordRefusal(req.Key, req.Client, err)
		return PushResult{}, err
	}
	return PushResult{Series: p.series, Bytes: p.bytes}, nil
}

// apply stores a prepared push. A refused push changes nothing.
func (s *MemoryStore) apply(p *prepared, req PushRequest, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)

	g := s.groups[p.key.id]
	// Check everything before changing anything.
	series, freed := p.series, int64(0)
	if g != nil {
		if req.Replace || g.expired {
			series, freed = p.series, g.bytes-g.overhead()
		} else {
			series = g.series
			i := 0
			for _, pt := range p.families { // both sorted by name
				for i < len(g.parts) && g.parts[i].name < pt.name {
					i++
				}
				if i < len(g.parts) && g.parts[i].name == pt.name {
					series -= g.parts[i].series
					freed += g.parts[i].size()
				}
				series += pt.series
			}
		}
	}
	if max := s.opts.Limits.MaxSeriesPerGroup; max > 0 && series > max {
		return s.limitError(KindTooLarge, LimitSeries, "group %s would hold %d series, more than the limit of %d per group", p.key.Excerpt(), series, max)
	}
	added := p.bytes - freed
	if g == nil {
		added += groupOverhead(p.key)
	}
	if max := s.opts.Limits.MaxBytes; max > 0 && added > 0 && s.bytes.Load()+added > max {
		return s.limitError(KindTooLarge, LimitBytes, "the relay's store would hold %s, more than its budget of %s; delete groups you no longer need, push fewer series, or raise the budget",
			formatBytes(s.bytes.Load()+added), formatBytes(max))
	}
	for _, pt := range p.families {
		f := s.families[pt.name]
		if f == nil || f.typ == pt.typ {
			continue
		}
		if f.reserved {
			return &Error{Kind: KindConflict, Msg: fmt.Sprintf("metric family %s is one of the relay's own metrics, of type %s; push it as %s or rename it", q(pt.name), typeName(f.typ), typeName(f.typ))}
		}
		for _, e := range f.parts {
			if e.g != g {
				return &Error{Kind: KindConflict, Msg: fmt.Sprintf("metric family %s is pushed as %s, but group %s already pushed it as %s", q(pt.name), typeName(pt.typ), e.g.key.Excerpt(), typeName(f.typ))}
			}
		}
	}
	if err := s.checkSeriesLocked(p, g); err != nil {
		return err
	}
	if g == nil {
		if max := s.opts.Limits.MaxGroups; max > 0 && len(s.groups) >= max && !s.forgetOldestExpiredLocked() {
			return s.limitError(KindFull, LimitGroups, "the relay already holds %d groups, its limit; delete a group you no longer need or raise the limit", len(s.groups))
		}
		g = newGroup(p.key)
		s.groups[p.key.id] = g
		i := sort.Search(len(s.order), func(i int) bool { return s.order[i].key.id >= g.key.id })
		s.order = slices.Insert(s.order, i, g)
		s.addBytesLocked(g, g.overhead())
	}

	// The group's parts and the push's, both sorted by name, merged: a family the push carries
	// replaces the group's part of it, and one it does not carry goes when the push replaces the
	// group (PUT, or an expired group), or stays (POST).
	replace := req.Replace || g.expired
	old := g.parts
	n := len(p.families)
	if !replace {
		n = len(old) + len(p.families) - carried(old, p.families)
	}
	parts := make([]*part, 0, n)
	i := 0
	for _, pt := range p.families {
		for ; i < len(old) && old[i].name < pt.name; i++ {
			if replace {
				s.removePartLocked(g, old[i])
			} else {
				parts = append(parts, old[i])
			}
		}
		var prev *part
		if i < len(old) && old[i].name == pt.name {
			prev = old[i]
			i++
		}
		s.addPartLocked(g, pt, prev)
		parts = append(parts, pt)
	}
	for ; i < len(old); i++ {
		if replace {
			s.removePartLocked(g, old[i])
		} else {
			parts = append(parts, old[i])
		}
	}
	g.parts = parts
	g.expired = false
	g.lastPush = now
	g.lastClient = req.Client
	g.pushes++
	return nil
}

// forgetOldestExpiredLocked forgets the expired group that went quiet first, to make room for a
// new group. It reports whether there was one.
func (s *MemoryStore) forgetOldestExpiredLocked() bool {
	var oldest *group
	for _, g := range s.order {
		if g.expired && (oldest == nil || g.lastPush.Before(oldest.lastPush)) {
			oldest = g
		}
	}
	if oldest == nil {
		return false
	}
	s.dropLocked(oldest)
	return true
}

// groupOverhead estimates the memory of a group's bookkeeping: its key, rendered labels, maps
// and health series.
func groupOverhead(k Key) int64 { return int64(512 + 3*k.size()) }

func (g *group) overhead() int64 { return groupOverhead(g.key) }

// groupBytes is what the group of key takes of the budget, 0 if the store does not hold it.
func (s *MemoryStore) groupBytes(key Key) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.groups[key.id]; g != nil {
		return g.bytes
	}
	return 0
}

func (s *MemoryStore) addBytesLocked(g *group, n int64) {
	g.bytes += n
	s.bytes.Add(n)
}

// newGroup returns an empty group with its labels rendered for the health series.
func newGroup(k Key) *group {
	g := &group{key: k}
	labels := mergeLabels(k)
	g.textLabels = append(appendLabelsText([]byte{'{'}, labels), '}')
	for _, l := range labels {
		g.protoLabels = appendLabelPairField(g.protoLabels, 1, l.Name, l.Value)
	}
	return g
}

// carried counts the parts of old (sorted by name) whose family is one of pushed (sorted too).
func carried(old, pushed []*part) int {
	n, i := 0, 0
	for _, pt := range pushed {
		for i < len(old) && old[i].name < pt.name {
			i++
		}
		if i < len(old) && old[i].name == pt.name {
			n++
			i++
		}
	}
	return n
}

// addPartLocked stores pt as g's part of its family, replacing g's previous part of it (prev,
// or nil), in the family and in the group's accounting; the caller updates g.parts.
func (s *MemoryStore) addPartLocked(g *group, pt, prev *part) {
	f := s.families[pt.name]
	pt.own(f)
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
	hint := -1
	if prev != nil {
		hint = int(prev.slot)
	}
	i, ok := f.locate(g, hint)
	pt.slot = int32(i)
	if ok {
		old := f.parts[i].pt
		g.series -= old.series
		s.addBytesLocked(g, -old.size())
		f.parts[i].pt = pt
	} else {
		f.parts = slices.Insert(f.parts, i, entry{g, pt})
	}
	g.series += pt.series
	s.addBytesLocked(g, pt.size())
}

// removePartLocked removes pt, g's part of its family, from the family and from the group's
// accounting; the caller updates g.parts.
func (s *MemoryStore) removePartLocked(g *group, pt *part) {
	f := s.families[pt.name]
	if i, ok := f.locate(g, int(pt.slot)); ok {
		f.parts = slices.Delete(f.parts, i, i+1)
	}
	if len(f.parts) == 0 && !f.reserved {
		delete(s.families, pt.name)
		s.names.Store(nil)
	}
	g.series -= pt.series
	s.addBytesLocked(g, -pt.size())
}

// checkSeriesLocked refuses a push to g that carries a series another group already exposes.
// Every series carries its group's grouping labels, so only groups whose keys agree on every
// label they share can expose the same series (a push of {job="a"} with a series labelled
// instance="x" and the group {job="a",instance="x"}); groups with distinct instances never
// need comparing.
func (s *MemoryStore) checkSeriesLocked(p *prepared, g *group) error {
	var pushed map[uint64]string
	for _, other := range s.order {
		if other == g || len(other.parts) == 0 || !compatible(other.key, p.key) {
			continue
		}
		if pushed == nil {
			pushed = make(map[uint64]string, p.hashes())
			for _, pt := range p.families {
				for i := range pt.hashes() {
					pushed[pt.hash(i)] = pt.name
				}
			}
		}
		for _, opt := range other.parts {
			for i := range opt.hashes() {
				if name, ok := pushed[opt.hash(i)]; ok {
					return &Error{Kind: KindConflict, Msg: fmt.Sprintf("metric family %s: a series of this push is already exposed by group %s (give the groups distinct labels)", q(name), other.key.Excerpt())}
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
	g.parts = nil
	s.addBytesLocked(g, -g.bytes)
	delete(s.groups, g.key.id)
	if i, ok := slices.BinarySearchFunc(s.order, g.key.id, func(o *group, id string) int { return strings.Compare(o.key.id, id) }); ok {
		s.order = slices.Delete(s.order, i, i+1)
	}
}

// RecordRefusal implements Store.
func (s *MemoryStore) RecordRefusal(k Key, client string, err error) {
	msg := Truncate(err.Error(), maxErrorText)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[k.id]; g != nil && !k.IsZero() {
		g.lastFailure, g.lastError, g.lastClient = now, msg, client
		g.failures++
		return
	}
	r := Refusal{Time: now, Client: Truncate(client, maxQuoted), Error: msg}
	if !k.IsZero() {
		r.Group = k.Excerpt()
	}
	if len(s.refusals) < maxRefusals {
		s.refusals = append(s.refusals, r)
	} else {
		s.refusals[s.nextRef] = r
	}
	s.nextRef = (s.nextRef + 1) % maxRefusals
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
			g.parts = nil
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

// Groups implements Store.
func (s *MemoryStore) Groups() []GroupStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	out := make([]GroupStatus, 0, len(s.groups))
	for _, g := range s.order {
		out = append(out, s.statusLocked(g, now))
	}
	return out
}

func (s *MemoryStore) statusLocked(g *group, now time.Time) GroupStatus {
	st := GroupStatus{
		Key: g.key, LastPush: g.lastPush, LastFailure: g.lastFailure, LastError: g.lastError,
		LastClient: g.lastClient, Pushes: g.pushes, Failures: g.failures, Fresh: s.fresh(g, now),
		Bytes: g.bytes,
	}
	if st.Fresh {
		st.Series = g.series
	}
	if s.opts.TTL > 0 {
		st.ExpiresAt = g.lastPush.Add(s.opts.TTL)
	}
	return st
}

// Usage implements Store.
func (s *MemoryStore) Usage() Usage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	u := Usage{Groups: len(s.groups), Bytes: s.bytes.Load(), Limits: s.opts.Limits, Expired: s.expired}
	for _, g := range s.order {
		if s.fresh(g, now) {
			u.FreshGroups++
			u.Series += g.series
		}
	}
	n := len(s.refusals)
	for i := range n {
		// Newest first: the newest is just before the ring's next slot.
		u.Refusals = append(u.Refusals, s.refusals[((s.nextRef-1-i)%n+n)%n])
	}
	return u
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

// formatBytes renders a byte count for messages: 512 B, 64.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
