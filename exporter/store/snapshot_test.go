package store_test

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

func snapGauge(name string, v float64, labels ...string) *dto.MetricFamily {
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String("h"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{m}}
}

func TestSnapshotRestoreKeepsSamplesAndTimes(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	p, err := store.Prepare(store.MustKey("job", "op", "instance", "laptop"), []*dto.MetricFamily{snapGauge("depth", 4, "name", "q")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(p, true); err != nil {
		t.Fatal(err)
	}
	p2, _ := store.Prepare(store.MustKey("job", "noinstance"), []*dto.MetricFamily{snapGauge("other", 1)}, 0)
	if err := a.Apply(p2, true); err != nil {
		t.Fatal(err)
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 2 {
		t.Fatalf("snapshot has %d groups", len(snap))
	}

	now = now.Add(2 * time.Minute)
	b := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	if n, errs := b.Restore(snap, 0); n != 2 || len(errs) != 0 {
		t.Fatalf("Restore = %d, %v", n, errs)
	}
	var before, after strings.Builder
	if err := a.WriteText(&before, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteText(&after, nil); err != nil {
		t.Fatal(err)
	}
	if before.String() != after.String() {
		t.Fatalf("exposition changed across snapshot and restore:\n%s\n---\n%s", before.String(), after.String())
	}
	for _, g := range b.Groups() {
		if !g.LastPush.Equal(now.Add(-2*time.Minute)) || g.Pushes != 1 {
			t.Errorf("restored %s: last push %v, pushes %d", g.Key, g.LastPush, g.Pushes)
		}
	}

	// Beyond the TTL the restored groups are expired; beyond TTL+ForgetAfter they are skipped.
	now = now.Add(4 * time.Minute)
	c := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	c.Restore(snap, 0)
	for _, g := range c.Groups() {
		if g.Fresh || g.Series != 0 {
			t.Errorf("%s restored fresh after its TTL", g.Key)
		}
	}
	now = now.Add(2 * time.Hour)
	d := store.New(store.Options{TTL: 5 * time.Minute, ForgetAfter: time.Hour, Now: clock})
	if n, _ := d.Restore(snap, 0); n != 0 || len(d.Groups()) != 0 {
		t.Errorf("restored %d groups past TTL+ForgetAfter", n)
	}
}

func TestRestoreReportsRefusedGroups(t *testing.T) {
	s := store.New(store.Options{MaxSeriesPerGroup: 1})
	_, errs := s.Restore([]store.GroupSnapshot{
		{Labels: map[string]string{"instance": "no-job"}},
		{Labels: map[string]string{"job": "big"}, Families: []*dto.MetricFamily{snapGauge("a", 1, "x", "1"), snapGauge("b", 1)}},
		{Labels: map[string]string{"job": "ok"}, Families: []*dto.MetricFamily{snapGauge("c", 1)}},
	}, 1)
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "job") || !strings.Contains(errs[1].Error(), "big") {
		t.Fatalf("errors %v; want the job-less and the oversized group named", errs)
	}
	if gs := s.Groups(); len(gs) != 1 || gs[0].Key.String() != `{job="ok"}` {
		t.Fatalf("groups %v", gs)
	}
}
