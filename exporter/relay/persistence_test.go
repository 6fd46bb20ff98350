package relay_test

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/persist"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// Groups and API sources survive a restart; restored groups keep their last push time, so
// expiry applies to them as if the relay had never stopped.
func TestPersistenceSurvivesRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "relay.json")
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	tokens, err := auth.ParseTokens([]byte("w\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := relay.Config{
		GroupTTL: 5 * time.Minute, ForgetAfter: time.Hour, PersistenceFile: file, Now: clk.Now,
		WriteTokens: tokens, SourceLimits: sources.Limits{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	}
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hunter2" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("# TYPE widgets gauge\nwidgets 3\n"))
	}))
	t.Cleanup(op.Close)
	bearer := []string{"Authorization", "Bearer w"}

	a := relaytest.Start(t, cfg)
	if code, msg := do(t, http.MethodPut, a.URL+"/metrics/job/op/instance/laptop", "", []byte("# TYPE workqueue_depth gauge\nworkqueue_depth{name=\"memcached\"} 4\n"), bearer...); code != http.StatusOK {
		t.Fatalf("push: %d %s", code, msg)
	}
	body := `{"url":"` + op.URL + `/metrics","interval":"1h","authorization":{"credentials":"hunter2"}}`
	if code, msg := do(t, http.MethodPut, a.URL+sources.APIPath+"/lan-op", "", []byte(body), bearer...); code != http.StatusCreated {
		t.Fatalf("PUT source: %d %s", code, msg)
	}
	a.Stop() // saves

	clk.Add(time.Minute)
	b := relaytest.Start(t, cfg)
	if !strings.Contains(b.Logs.String(), "restored from the persistence file") {
		t.Errorf("restore not logged:\n%s", b.Logs)
	}
	if v, ok := promtest.Value(promtest.Scrape(t, b.URL+"/metrics"), "workqueue_depth", map[string]string{"job": "op", "instance": "laptop", "name": "memcached"}); !ok || v != 4 {
		t.Fatalf("restored sample: %v %v", v, ok)
	}
	var found bool
	for _, g := range b.Store.Groups() {
		if g.Key.String() == `{instance="laptop",job="op"}` {
			found = true
			if want := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC); !g.LastPush.Equal(want) || g.Pushes != 1 || !g.ExpiresAt.Equal(want.Add(5*time.Minute)) {
				t.Errorf("restored group %+v: want last push %v kept", g, want)
			}
		}
	}
	if !found {
		t.Fatalf("group not restored: %v", b.Store.Groups())
	}
	if st, ok := b.Sources.Get("lan-op"); !ok || st.Origin != "api" || st.URL != op.URL+"/metrics" {
		t.Fatalf("API source not restored: %+v %v", st, ok)
	}
	promtest.Eventually(t, 10*time.Second, "the restored source to scrape with its restored token", func() bool {
		st, _ := b.Sources.Get("lan-op")
		return st.Health.Up
	})
	b.Stop()

	// Past the TTL, a restored group is expired: health kept, samples gone.
	clk.Add(10 * time.Minute)
	c := relaytest.Start(t, cfg)
	fams := promtest.Scrape(t, c.URL+"/metrics")
	if _, ok := promtest.Value(fams, "workqueue_depth", map[string]string{"job": "op"}); ok {
		t.Fatal("a group restored after its TTL is still exposed")
	}
	if v, ok := promtest.Value(fams, "opview_relay_group_fresh", map[string]string{"job": "op", "instance": "laptop"}); !ok || v != 0 {
		t.Fatalf("opview_relay_group_fresh of the expired restored group = %v %v, want 0", v, ok)
	}
}

// A truncated or garbage file is logged and moved aside; the relay starts empty and serves.
func TestPersistenceCorruptFile(t *testing.T) {
	for name, content := range map[string]string{
		"truncated": `{"format":"opview-relay-persistence","version":1,"saved_at":"2026-11-23T10:00:00Z","groups":[{"labels":{"job":"op"},"last_pu`,
		"garbage":   "\x1f\x8b\x08 this is not a persistence file",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "relay.json")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			l := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, PersistenceFile: file})
			if !strings.Contains(l.Logs.String(), "persistence file is corrupt") || !strings.Contains(l.Logs.String(), ".corrupt-") {
				t.Errorf("corruption not logged with the new place:\n%s", l.Logs)
			}
			aside, _ := filepath.Glob(file + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("corrupt file not moved aside: %v", aside)
			}
			if b, _ := os.ReadFile(aside[0]); string(b) != content {
				t.Error("the file moved aside is not the original")
			}
			if code, _ := do(t, http.MethodGet, l.URL+"/metrics", "", []byte("")); code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			if code, msg := do(t, http.MethodPut, l.URL+"/metrics/job/x", "", []byte("a 1\n")); code != http.StatusOK {
				t.Fatalf("push after a corrupt file: %d %s", code, msg)
			}
			l.Stop()
			if _, groups, err := persist.ReadFile(file); err != nil || len(groups) != 1 {
				t.Fatalf("the relay did not write a fresh file on shutdown: %v %v", groups, err)
			}
		})
	}
}

func TestPersistencePeriodicSave(t *testing.T) {
	file := filepath.Join(t.TempDir(), "relay.json")
	l := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, PersistenceFile: file, PersistenceInterval: 20 * time.Millisecond})
	if code, msg := do(t, http.MethodPut, l.URL+"/metrics/job/periodic", "", []byte("a 1\n")); code != http.StatusOK {
		t.Fatalf("push: %d %s", code, msg)
	}
	promtest.Eventually(t, 10*time.Second, "the periodic save to contain the group", func() bool {
		_, groups, err := persist.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatalf("loading a periodically saved file: %v", err)
		}
		return len(groups) == 1 && groups[0].Labels["job"] == "periodic"
	})
}
