package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/exporter/store"
)

// snapshot collects a store's snapshot.
func snapshot(t *testing.T, s *store.MemoryStore) []store.GroupSnapshot {
	t.Helper()
	var out []store.GroupSnapshot
	if err := s.Snapshot(func(g store.GroupSnapshot) error { out = append(out, g); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func restoreAll(s *store.MemoryStore, groups []store.GroupSnapshot) (n int, errs []error) {
	for _, g := range groups {
		ok, err := s.Restore(g)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			n++
		}
	}
	return n, errs
}

func TestSnapshotRestoreKeepsSamplesAndTimes(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	mustPush(t, a, store.MustKey("job", "op", "instance", "laptop"), gauge("depth", 4, "name", "q"))
	now = now.Add(time.Second)
	mustPush(t, a, store.MustKey("job", "noinstance"), gauge("other", 1))
	snap := snapshot(t, a)
	if len(snap) != 2 {
		t.Fatalf("snapshot has %d groups", len(snap))
	}
	if snap[0].Labels["job"] != "noinstance" {
		t.Errorf("snapshot starts with %v; want the most recently pushed group first", snap[0].Labels)
	}

	now = now.Add(2 * time.Minute)
	b := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	if n, errs := restoreAll(b, snap); n != 2 || len(errs) != 0 {
		t.Fatalf("Restore = %d, %v", n, errs)
	}
	if before, after := text(t, a), text(t, b); before != after {
		t.Fatalf("exposition changed across snapshot and restore:\n%s\n---\n%s", before, after)
	}
	for _, g := range b.Groups() {
		if g.Pushes != 1 || now.Sub(g.LastPush) < 2*time.Minute {
			t.Errorf("restored %s: last push %v, pushes %d", g.Key, g.LastPush, g.Pushes)
		}
	}

	// Beyond the TTL the restored groups are expired; beyond TTL+ForgetAfter they are skipped.
	now = now.Add(4 * time.Minute)
	c := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	restoreAll(c, snap)
	for _, g := range c.Groups() {
		if g.Fresh || g.Series != 0 {
			t.Errorf("%s restored fresh after its TTL", g.Key)
		}
	}
	now = now.Add(2 * time.Hour)
	d := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	if n, errs := restoreAll(d, snap); n != 0 || len(errs) != 0 || len(d.Groups()) != 0 {
		t.Errorf("restored %d groups past TTL+ForgetAfter (%v)", n, errs)
	}
}

func TestRestoreRefusesWhatAPushWouldBeRefused(t *testing.T) {
	src := store.New(store.Options{})
	mustPush(t, src, store.MustKey("job", "big"), gauge("a", 1, "x", "1"), gauge("b", 1))
	mustPush(t, src, store.MustKey("job", "ok"), gauge("c", 1))
	snap := snapshot(t, src)
	snap = append(snap, store.GroupSnapshot{Labels: map[string]string{"instance": "no-job"}})

	s := store.New(store.Options{Limits: store.Limits{MaxSeriesPerGroup: 1}})
	_, errs := restoreAll(s, snap)
	if len(errs) != 2 || !strings.Contains(fmt.Sprint(errs), "job") || !strings.Contains(fmt.Sprint(errs), "big") {
		t.Fatalf("errors %v; want the job-less and the oversized group named", errs)
	}
	if gs := s.Groups(); len(gs) != 1 || gs[0].Key.String() != `{job="ok"}` {
		t.Fatalf("groups %v", gs)
	}
}

// TestRestoreIntoASmallerBudgetKeepsTheFreshest: a file saved under a larger budget restores
// what fits, the most recently pushed groups first, and says which refusals were the budget's.
func TestRestoreIntoASmallerBudgetKeepsTheFreshest(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src := store.New(store.Options{Now: clock})
	for i := range 10 {
		now = now.Add(time.Second)
		mustPush(t, src, store.MustKey("job", fmt.Sprintf("g%d", i)), histogram("latency", 40))
	}
	used := src.Usage().Bytes
	dst := store.New(store.Options{Now: clock, Limits: store.Limits{MaxBytes: used / 2}})
	var overBudget int
	for _, g := range snapshot(t, src) {
		_, err := dst.Restore(g)
		var se *store.Error
		if errors.As(err, &se) && se.Limit == store.LimitBytes {
			overBudget++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	u := dst.Usage()
	if u.Bytes > used/2 || overBudget == 0 || u.Groups+overBudget != 10 {
		t.Fatalf("restored %d groups (%d bytes of %d), %d over budget", u.Groups, u.Bytes, used/2, overBudget)
	}
	for _, g := range dst.Groups() {
		var i int
		fmt.Sscanf(g.Key.Excerpt(), `{job="g%d"}`, &i)
		if i < 10-u.Groups {
			t.Errorf("restored %s, an older group, instead of a fresher one", g.Key)
		}
	}
}
