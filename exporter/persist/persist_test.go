package persist

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

func families(t testing.TB, mfs ...*dto.MetricFamily) []byte {
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := protodelim.MarshalTo(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func sampleGroups(t testing.TB) []store.GroupSnapshot {
	v := 42.0
	return []store.GroupSnapshot{{
		Labels:   map[string]string{"job": "op", "instance": "laptop"},
		LastPush: time.Date(2026, 11, 23, 9, 59, 0, 0, time.UTC), Pushes: 7, Failures: 1, LastError: "bad", LastFailure: time.Date(2026, 11, 23, 9, 58, 0, 0, time.UTC),
		Families: families(t, &dto.MetricFamily{
			Name: proto.String("workqueue_depth"), Help: proto.String("Depth."), Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: proto.String("name"), Value: proto.String("memcached")}}, Gauge: &dto.Gauge{Value: &v}}},
		}),
	}, {
		Labels: map[string]string{"job": "gone"}, LastPush: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), Expired: true,
	}}
}

var sampleHeader = Header{
	SavedAt: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	Sources: json.RawMessage(`{"lan-op":{"url":"http://192.168.1.20:8080/metrics","interval":"30s"}}`),
}

func each(groups []store.GroupSnapshot) Groups {
	return func(fn func(store.GroupSnapshot) error) error {
		for _, g := range groups {
			if err := fn(g); err != nil {
				return err
			}
		}
		return nil
	}
}

func encode(t testing.TB, h Header, groups []store.GroupSnapshot) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, h, each(groups)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decode(b []byte) (*Header, []store.GroupSnapshot, error) {
	var groups []store.GroupSnapshot
	h, err := Decode(bytes.NewReader(b), func(g store.GroupSnapshot) error { groups = append(groups, g); return nil })
	return h, groups, err
}

func TestRoundTrip(t *testing.T) {
	in := sampleGroups(t)
	h, out, err := decode(encode(t, sampleHeader, in))
	if err != nil {
		t.Fatal(err)
	}
	if !h.SavedAt.Equal(sampleHeader.SavedAt) || len(out) != 2 {
		t.Fatalf("decoded %+v, %d groups", h, len(out))
	}
	var srcs map[string]map[string]string
	if err := json.Unmarshal(h.Sources, &srcs); err != nil || srcs["lan-op"]["url"] != "http://192.168.1.20:8080/metrics" {
		t.Errorf("sources: %s (%v)", h.Sources, err)
	}
	g := out[0]
	if g.Labels["instance"] != "laptop" || !g.LastPush.Equal(in[0].LastPush) || g.Pushes != 7 || g.Failures != 1 || g.LastError != "bad" || !g.LastFailure.Equal(in[0].LastFailure) {
		t.Errorf("group metadata: %+v", g)
	}
	if !bytes.Equal(g.Families, in[0].Families) {
		t.Errorf("families changed")
	}
	if !out[1].Expired || len(out[1].Families) != 0 {
		t.Errorf("expired group: %+v", out[1])
	}
}

// TestDecodeReadsTheFirstFormat reads a file as the relay wrote it before saves were streamed:
// sources after the groups.
func TestDecodeReadsTheFirstFormat(t *testing.T) {
	old := `{"format":"opview-relay-persistence","version":1,"saved_at":"2026-11-23T10:00:00Z","groups":[{"labels":{"job":"op"},"last_push":"2026-11-23T09:59:00Z","pushes":1,"failures":0}],"sources":{"lan-op":{"url":"http://192.168.1.20:8080/metrics"}}}` + "\n"
	h, groups, err := decode([]byte(old))
	if err != nil || len(groups) != 1 || !strings.Contains(string(h.Sources), "lan-op") {
		t.Fatalf("old file: %+v %v %v", h, groups, err)
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	good := encode(t, sampleHeader, sampleGroups(t))
	cases := map[string][]byte{
		"empty":           nil,
		"truncated":       good[:len(good)/2],
		"garbage":         []byte("\x00\x01PK\x03\x04 not json"),
		"other json":      []byte(`{"hello": "world"}`),
		"wrong format":    []byte(`{"format":"prometheus","version":1,"groups":[]}`),
		"wrong version":   []byte(`{"format":"opview-relay-persistence","version":99,"groups":[]}`),
		"trailing data":   append(append([]byte{}, good...), []byte(`{"format":"x"}`)...),
		"broken framing":  []byte(`{"format":"opview-relay-persistence","version":1,"groups":[{"labels":{"job":"x"},"last_push":"2026-11-23T10:00:00Z","pushes":1,"failures":0,"families":"/////w=="}]}`),
		"no labels":       []byte(`{"format":"opview-relay-persistence","version":1,"groups":[{"last_push":"2026-11-23T10:00:00Z","pushes":1,"failures":0}]}`),
		"unknown field":   []byte(`{"format":"opview-relay-persistence","version":1,"extra":1,"groups":[]}`),
		"no format":       []byte(`{"groups":[]}`),
		"groups not list": []byte(`{"format":"opview-relay-persistence","version":1,"groups":{}}`),
	}
	for name, b := range cases {
		if _, _, err := decode(b); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
}

func TestSaveIsAtomicAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Persister{Path: path, Groups: each(sampleGroups(t))}
	if err := p.Save(); err != nil {
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
	if _, groups, err := ReadFile(path); err != nil || len(groups) != 2 {
		t.Fatalf("ReadFile after Save: %v %v", groups, err)
	}
	// A save that fails half-way leaves the old file and no temporary file.
	broken := &Persister{Path: path, Groups: func(fn func(store.GroupSnapshot) error) error {
		fn(sampleGroups(t)[0])
		return errors.New("store went away")
	}}
	if err := broken.Save(); err == nil || !strings.Contains(err.Error(), "store went away") {
		t.Fatalf("failing save: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a failed save left files behind: %v", entries)
	}
	if _, groups, err := ReadFile(path); err != nil || len(groups) != 2 {
		t.Fatalf("a failed save harmed the file: %v %v", groups, err)
	}
}

// TestCheckNamesAMissingDirectory: a file in a directory that does not exist is reported at
// start, naming the file, not at the first save.
func TestCheckNamesAMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "x.json")
	p := &Persister{Path: path, Groups: each(nil)}
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Errorf("Check of a missing directory: %v", err)
	}
	ok := &Persister{Path: filepath.Join(t.TempDir(), "x.json"), Groups: each(nil)}
	if err := ok.Check(); err != nil {
		t.Errorf("Check of a writable directory: %v", err)
	}
}

// TestLoadRemovesStaleTempFiles: a save killed before its rename (kill -9) leaves a temporary
// file; the next start removes it and keeps the real file.
func TestLoadRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	p := &Persister{Path: path, Groups: each(sampleGroups(t))}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".relay.json.tmp-123456")
	other := filepath.Join(dir, "unrelated.tmp-1")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 1<<16), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if _, err := p.Load(func(store.GroupSnapshot) { n++ }); err != nil || n != 2 {
		t.Fatalf("Load: %d groups, %v", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale temporary file is still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not ours was removed: %v", err)
	}
}

func TestLoadMovesACorruptFileAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	now := time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	p := &Persister{Path: path, Now: func() time.Time { return now }}
	if h, err := p.Load(func(store.GroupSnapshot) {}); h != nil || err != nil {
		t.Fatalf("missing file: %v %v; want nothing", h, err)
	}
	good := encode(t, sampleHeader, sampleGroups(t))
	// Twice in the same instant: the second copy must not overwrite the first.
	var moved []string
	for i := range 2 {
		if err := os.WriteFile(path, good[:len(good)-10-i], 0o600); err != nil {
			t.Fatal(err)
		}
		n := 0
		h, err := p.Load(func(store.GroupSnapshot) { n++ })
		var ce *CorruptError
		if h != nil || !errors.As(err, &ce) {
			t.Fatalf("Load = %v, %v; want a CorruptError", h, err)
		}
		if n != 1 { // the cut falls in the second group
			t.Errorf("the group before the damage was not restored: %d groups", n)
		}
		if !strings.HasPrefix(ce.MovedTo, path+".corrupt-20261123T103000") || !strings.Contains(err.Error(), ce.MovedTo) {
			t.Fatalf("moved to %q (%v)", ce.MovedTo, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("the corrupt file is still at %s", path)
		}
		if b, err := os.ReadFile(ce.MovedTo); err != nil || len(b) != len(good)-10-i {
			t.Errorf("the corrupt file was not kept intact for inspection: %v", err)
		}
		moved = append(moved, ce.MovedTo)
	}
	if moved[0] == moved[1] {
		t.Errorf("two corrupt files moved to the same name %s", moved[0])
	}
}

func FuzzDecode(f *testing.F) {
	// The seeds are also committed under testdata/fuzz/FuzzDecode.
	good := encode(f, sampleHeader, sampleGroups(f))
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add([]byte(`{"format":"opview-relay-persistence","version":1,"groups":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, groups, err := decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same thing.
		h2, again, err := decode(encode(t, *h, groups))
		if err != nil {
			t.Fatalf("re-decoding an encoded file: %v", err)
		}
		if len(again) != len(groups) || !bytes.Equal(compact(t, h2.Sources), compact(t, h.Sources)) {
			t.Fatalf("round trip changed the file: %d/%d groups", len(groups), len(again))
		}
		for i := range groups {
			if !bytes.Equal(again[i].Families, groups[i].Families) {
				t.Fatalf("group %d: families changed", i)
			}
		}
	})
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
