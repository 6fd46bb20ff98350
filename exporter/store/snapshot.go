package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
)

// GroupSnapshot is one group as persisted across relay restarts: its grouping labels, health
// and samples. An expired group has no families.
type GroupSnapshot struct {
	Labels      map[string]string
	LastPush    time.Time
	LastFailure time.Time
	LastError   string
	Pushes      uint64
	Failures    uint64
	Expired     bool
	// Families are length-delimited io.prometheus.client.MetricFamily messages, as the group's
	// samples are exposed (grouping labels included).
	Families []byte
}

// Snapshot calls fn for every group, fresh or expired, the most recently pushed first (so that a
// restore into a smaller budget keeps the freshest groups). It holds the read lock only to
// collect the groups' pre-rendered parts, which are immutable, and encodes one group at a time
// after: a snapshot needs the memory of one group, not of the store.
func (s *MemoryStore) Snapshot(fn func(GroupSnapshot) error) error {
	type rawGroup struct {
		snap  GroupSnapshot
		parts []*part
	}
	s.mu.RLock()
	now := s.now()
	groups := make([]rawGroup, 0, len(s.groups))
	for _, g := range s.order {
		rg := rawGroup{snap: GroupSnapshot{
			Labels:   make(map[string]string, len(g.key.labels)),
			LastPush: g.lastPush, LastFailure: g.lastFailure, LastError: g.lastError,
			Pushes: g.pushes, Failures: g.failures, Expired: !s.fresh(g, now),
		}}
		for _, l := range g.key.labels {
			rg.snap.Labels[l.Name] = l.Value
		}
		if !rg.snap.Expired {
			rg.parts = append(rg.parts, g.parts...) // sorted by name
		}
		groups = append(groups, rg)
	}
	s.mu.RUnlock()
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].snap.LastPush.After(groups[j].snap.LastPush) })

	for i := range groups {
		rg := &groups[i]
		var buf []byte
		for _, pt := range rg.parts {
			// A family's encoding is its header followed by its Metric fields, which is how
			// parts are pre-rendered.
			h := protoHeader(pt.name, pt.typ, pt.help)
			buf = protowire.AppendVarint(buf, uint64(len(h)+len(pt.proto())))
			buf = append(buf, h...)
			buf = append(buf, pt.proto()...)
		}
		rg.snap.Families = buf
		rg.parts = nil
		if err := fn(rg.snap); err != nil {
			return err
		}
	}
	return nil
}

// Restore adds one persisted group to the store, validated like a push and within the limits
// and byte budget (a refusal is an *Error; a group over the budget has Limit LimitBytes). The
// group keeps its last push time, so expiry applies as if the relay had never stopped: a group
// older than the TTL is restored expired, and one older than TTL+ForgetAfter is skipped
// (restored false, no error). Call it before serving: between storing the group and restoring
// its times, a concurrent push would be overwritten.
func (s *MemoryStore) Restore(gs GroupSnapshot) (restored bool, err error) {
	key, err := NewKey(gs.Labels)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("group %s: %w", key.Excerpt(), err)
		}
	}()
	now := s.now()
	if s.opts.TTL > 0 && now.Sub(gs.LastPush) > s.opts.TTL+s.opts.ForgetAfter {
		return false, nil // would be forgotten at once
	}
	var fams []*dto.MetricFamily
	if !gs.Expired {
		if fams, err = decodeFamilies(gs.Families, s.opts.Limits.MaxBytes); err != nil {
			return false, &Error{Kind: KindInvalid, Msg: err.Error()}
		}
	}
	p, err := s.prepare(key, fams, nil)
	if err == nil {
		err = s.apply(p, PushRequest{Key: key, Replace: true, Client: "persistence file"}, now)
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[key.id]; g != nil {
		g.lastPush, g.lastFailure, g.lastError = gs.LastPush, gs.LastFailure, Truncate(gs.LastError, maxErrorText)
		g.pushes, g.failures = gs.Pushes, gs.Failures
		if gs.Expired {
			for _, pt := range g.parts {
				s.removePartLocked(g, pt)
			}
			g.parts = nil
			g.expired = true
		}
	}
	return true, nil
}

// decodeFamilies reads length-delimited MetricFamily messages, none larger than max (0: 256 MiB).
func decodeFamilies(b []byte, max int64) ([]*dto.MetricFamily, error) {
	if max <= 0 {
		max = 256 << 20
	}
	var out []*dto.MetricFamily
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		mf := &dto.MetricFamily{}
		err := protodelim.UnmarshalOptions{MaxSize: max}.UnmarshalFrom(r, mf)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("family %d: %s", len(out)+1, Truncate(err.Error(), maxErrorText))
		}
		out = append(out, mf)
	}
}
