package persist

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/exporter/store"
)

func sample() *Snapshot {
	v := 42.0
	return &Snapshot{
		SavedAt: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Groups: []store.GroupSnapshot{{
			Labels:   map[string]string{"job": "op", "instance": "laptop"},
			LastPush: time.Date(2026, 11, 23, 9, 59, 0, 0, time.UTC), Pushes: 7, Failures: 1, LastError: "bad", LastFailure: time.Date(2026, 11, 23, 9, 58, 0, 0, time.UTC),
			Families: []*dto.MetricFamily{{
				Name: proto.String("workqueue_depth"), Help: proto.String("Depth."), Type: dto.MetricType_GAUGE.Enum(),
				Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: proto.String("name"), Value: proto.String("memcached")}}, Gauge: &dto.Gauge{Value: &v}}},
			}},
		}, {
			Labels: map[string]string{"job": "gone"}, LastPush: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), Expired: true,
		}},
		Sources: map[string]sources.Spec{"lan-op": {URL: "http://192.168.1.20:8080/metrics", Interval: sources.Duration(30 * time.Second)}},
	}
}

func encode(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	out, err := Decode(encode(t, in))
	if err != nil {
		t.Fatal(err)
	}
	if !out.SavedAt.Equal(in.SavedAt) || len(out.Groups) != 2 || len(out.Sources) != 1 {
		t.Fatalf("decoded %+v", out)
	}
	g := out.Groups[0]
	if g.Labels["instance"] != "laptop" || !g.LastPush.Equal(in.Groups[0].LastPush) || g.Pushes != 7 || g.Failures != 1 || g.LastError != "bad" || !g.LastFailure.Equal(in.Groups[0].LastFailure) {
		t.Errorf("group metadata: %+v", g)
	}
	if len(g.Families) != 1 || !proto.Equal(g.Families[0], in.Groups[0].Families[0]) {
		t.Errorf("families: %v", g.Families)
	}
	if !out.Groups[1].Expired || len(out.Groups[1].Families) != 0 {
		t.Errorf("expired group: %+v", out.Groups[1])
	}
	if out.Sources["lan-op"].URL != "http://192.168.1.20:8080/metrics" || time.Duration(out.Sources["lan-op"].Interval) != 30*time.Second {
		t.Errorf("sources: %+v", out.Sources)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	good := encode(t, sample())
	cases := map[string][]byte{
		"empty":         nil,
		"truncated":     good[:len(good)/2],
		"garbage":       []byte("\x00\x01PK\x03\x04 not json"),
		"other json":    []byte(`{"hello": "world"}`),
		"wrong format":  []byte(`{"format":"prometheus","version":1,"groups":[]}`),
		"wrong version": []byte(`{"format":"opview-relay-persistence","version":99,"groups":[]}`),
		"trailing data": append(append([]byte{}, good...), []byte(`{"format":"x"}`)...),
		"bad families":  []byte(`{"format":"opview-relay-persistence","version":1,"groups":[{"labels":{"job":"x"},"last_push":"2026-11-23T10:00:00Z","pushes":1,"failures":0,"families":"/////w=="}]}`),
		"no labels":     []byte(`{"format":"opview-relay-persistence","version":1,"groups":[{"last_push":"2026-11-23T10:00:00Z","pushes":1,"failures":0}]}`),
	}
	for name, b := range cases {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
}

func TestWriteFileIsAtomicAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, sample()); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (sources' credentials may be in it)", fi.Mode().Perm())
	}
	s, err := Load(path, time.Now())
	if err != nil || s == nil || len(s.Groups) != 2 {
		t.Fatalf("Load after WriteFile: %v %v", s, err)
	}
	// A directory that does not exist: the error names the file.
	if err := WriteFile(filepath.Join(dir, "missing", "x.json"), sample()); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Errorf("WriteFile into a missing directory: %v", err)
	}
}

func TestLoadMovesACorruptFileAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	if s, err := Load(path, time.Now()); s != nil || err != nil {
		t.Fatalf("missing file: %v %v; want nothing", s, err)
	}
	good := encode(t, sample())
	if err := os.WriteFile(path, good[:len(good)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	s, err := Load(path, now)
	var ce *CorruptError
	if s != nil || !errors.As(err, &ce) {
		t.Fatalf("Load = %v, %v; want a CorruptError", s, err)
	}
	want := path + ".corrupt-20261123T103000Z"
	if ce.MovedTo != want || !strings.Contains(err.Error(), want) {
		t.Fatalf("moved to %q (%v), want %q", ce.MovedTo, err, want)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the corrupt file is still at %s", path)
	}
	if b, err := os.ReadFile(want); err != nil || len(b) != len(good)-10 {
		t.Errorf("the corrupt file was not kept intact for inspection: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	// The seeds are also committed under testdata/fuzz/FuzzDecode.
	good := encode(f, sample())
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte(`{"format":"opview-relay-persistence","version":1,"groups":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same thing.
		again, err := Decode(encode(t, s))
		if err != nil {
			t.Fatalf("re-decoding an encoded snapshot: %v", err)
		}
		if len(again.Groups) != len(s.Groups) || len(again.Sources) != len(s.Sources) {
			t.Fatalf("round trip changed the snapshot: %d/%d groups", len(s.Groups), len(again.Groups))
		}
		for i := range s.Groups {
			if len(again.Groups[i].Families) != len(s.Groups[i].Families) {
				t.Fatalf("group %d: %d families, then %d", i, len(s.Groups[i].Families), len(again.Groups[i].Families))
			}
		}
	})
}
