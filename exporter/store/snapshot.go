package store

import (
	"fmt"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// GroupSnapshot is one group as persisted across relay restarts: its grouping labels, health
// and samples (as pushed, grouping labels included). An expired group has no families.
type GroupSnapshot struct {
	Labels      map[string]string
	LastPush    time.Time
	LastFailure time.Time
	LastError   string
	Pushes      uint64
	Failures    uint64
	Expired     bool
	Families    []*dto.MetricFamily
}

// Snapshot returns every group, fresh or expired, sorted by key. It holds the read lock only to
// collect the groups' pre-rendered parts (immutable) and decodes them after.
func (s *MemoryStore) Snapshot() ([]GroupSnapshot, error) {
	type rawFamily struct {
		name, help string
		typ        dto.MetricType
		body       []byte
	}
	type rawGroup struct {
		id   string
		snap GroupSnapshot
		raw  []rawFamily
	}
	s.mu.RLock()
	now := s.now()
	groups := make([]rawGroup, 0, len(s.groups))
	for _, g := range s.groups {
		rg := rawGroup{id: g.key.id, snap: GroupSnapshot{
			Labels:   map[string]string{},
			LastPush: g.lastPush, LastFailure: g.lastFailure, LastError: g.lastError,
			Pushes: g.pushes, Failures: g.failures, Expired: !s.fresh(g, now),
		}}
		for _, l := range g.key.labels {
			rg.snap.Labels[l.Name] = l.Value
		}
		if !rg.snap.Expired {
			for _, pt := range g.parts {
				rg.raw = append(rg.raw, rawFamily{name: pt.name, help: pt.help, typ: pt.typ, body: pt.proto})
			}
		}
		groups = append(groups, rg)
	}
	s.mu.RUnlock()
	sort.Slice(groups, func(i, j int) bool { return groups[i].id < groups[j].id })

	out := make([]GroupSnapshot, 0, len(groups))
	for _, rg := range groups {
		gs := rg.snap
		for _, rf := range rg.raw {
			mf := &dto.MetricFamily{}
			// A family's encoding is its header followed by its Metric fields, which is how
			// parts are pre-rendered.
			b := append(protoHeader(rf.name, rf.typ, rf.help), rf.body...)
			if err := proto.Unmarshal(b, mf); err != nil {
				return nil, fmt.Errorf("snapshot of group %v: %w", gs.Labels, err)
			}
			gs.Families = append(gs.Families, mf)
		}
		out = append(out, gs)
	}
	return out, nil
}

// Restore adds persisted groups to the store, validating them like pushes (maxSeries per group,
// 0: no limit). Each group keeps its last push time, so expiry applies as if the relay had never
// stopped: a group older than the TTL is restored expired and one older than TTL+ForgetAfter is
// skipped. It returns how many groups were restored and one error per group that was not. Call it
// before serving: between its Apply and the restoring of the group's times, a concurrent push
// would be overwritten.
func (s *MemoryStore) Restore(groups []GroupSnapshot, maxSeries int) (int, []error) {
	var errs []error
	n := 0
	now := s.now()
	for _, gs := range groups {
		key, err := NewKey(gs.Labels)
		if err != nil {
			errs = append(errs, fmt.Errorf("group %v: %w", gs.Labels, err))
			continue
		}
		if s.opts.TTL > 0 && now.Sub(gs.LastPush) > s.opts.TTL+s.opts.ForgetAfter {
			continue // would be forgotten at once
		}
		fams := gs.Families
		if gs.Expired {
			fams = nil
		}
		p, err := Prepare(key, fams, maxSeries)
		if err == nil {
			err = s.Apply(p, true)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", key, err))
			continue
		}
		s.mu.Lock()
		if g := s.groups[key.id]; g != nil {
			g.lastPush, g.lastFailure, g.lastError = gs.LastPush, gs.LastFailure, gs.LastError
			g.pushes, g.failures = gs.Pushes, gs.Failures
			if gs.Expired {
				for _, pt := range g.parts {
					s.removePartLocked(g, pt)
				}
				g.expired = true
			}
		}
		s.mu.Unlock()
		n++
	}
	return n, errs
}
