package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/opview/opview/exporter/store"
	"github.com/opview/opview/internal/promtest"
)

// serve runs one request through the push handlers over a store with the given limits.
func serve(t *testing.T, s *store.MemoryStore, lim Limits, gate *Gate, method, path, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	in := NewInstrumentation(prometheus.NewRegistry())
	log := slog.New(slog.DiscardHandler)
	mux.Handle("PUT "+PushPathPrefix, Push(s, true, lim, gate, in, log))
	mux.Handle("POST "+PushPathPrefix, Push(s, false, lim, gate, in, log))
	mux.Handle("DELETE "+PushPathPrefix, Delete(s, in, log))
	mux.Handle("PUT /metrics", NoGroup(in))
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.7:4242"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

// TestPushStatusCodes: each kind of refusal maps to its status, with a message naming the group
// and, for a limit, the setting that raises it.
func TestPushStatusCodes(t *testing.T) {
	s := store.New(store.Options{
		Limits:     store.Limits{MaxGroups: 2, MaxSeriesPerGroup: 3},
		LimitNames: map[store.Limit]string{store.LimitGroups: "--store.max-groups", store.LimitSeries: "--group.max-series"},
	})
	lim := Limits{MaxBodyBytes: 1024, MaxSeries: 3, MaxLabels: 64, MaxBodyBytesFlag: "--push.max-body-bytes", MaxSeriesFlag: "--group.max-series", MaxLabelsFlag: "--push.label-limit"}
	ok := func(path, body string) {
		if rec := serve(t, s, lim, nil, "PUT", path, body); rec.Code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	ok("/metrics/job/a", "# TYPE c counter\nc 1\n")
	ok("/metrics/job/b", "g 1\n")
	for _, c := range []struct {
		method, path, body string
		header             []string
		code               int
		want               string
	}{
		{"PUT", "/metrics/job/a", "c{", nil, 400, `push to group {job="a"} refused: text body`},
		{"PUT", "/metrics/nojob", "c 1\n", nil, 400, "/metrics/job/<job>"},
		{"PUT", "/metrics", "c 1\n", nil, 400, "the job is missing"},
		{"PUT", "/metrics/job/b", "# TYPE c gauge\nc 1\n", nil, 409, "already pushed it as counter"},
		{"PUT", "/metrics/job/a", "x{i=\"1\"} 1\nx{i=\"2\"} 1\nx{i=\"3\"} 1\nx{i=\"4\"} 1\n", nil, 413, "(--group.max-series)"},
		{"PUT", "/metrics/job/a", "x{l=\"" + strings.Repeat("v", 1100) + "\"} 1\n", nil, 413, "(--push.max-body-bytes)"},
		{"PUT", "/metrics/job/a", "x{" + strings.Repeat("l=\"\",", 70) + "} 1\n", nil, 400, "(--push.label-limit)"},
		{"PUT", "/metrics/job/a", "", []string{"Content-Encoding", "br"}, 400, "Content-Encoding"},
		{"PUT", "/metrics/job/c", "g 1\n", nil, 403, "(--store.max-groups)"},
	} {
		rec := serve(t, s, lim, nil, c.method, c.path, c.body, c.header...)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s %s: %d %q; want %d with %q", c.method, c.path, rec.Code, rec.Body, c.code, c.want)
		}
	}
	if rec := serve(t, s, lim, nil, "DELETE", "/metrics/job/b", ""); rec.Code != http.StatusAccepted {
		t.Errorf("DELETE: %d", rec.Code)
	}
	if rec := serve(t, s, lim, nil, "DELETE", "/metrics/job/never-was", ""); rec.Code != http.StatusAccepted {
		t.Errorf("DELETE of an unknown group: %d (Pushgateway answers 202)", rec.Code)
	}
	// Refusals are recorded where the status page shows them: on the group, or among the
	// refusals of unknown groups, with the client's address.
	var a store.GroupStatus
	for _, g := range s.Groups() {
		if g.Key.String() == `{job="a"}` {
			a = g
		}
	}
	if a.Failures < 3 || a.LastClient != "192.0.2.7:4242" {
		t.Errorf("group a: %d failures recorded, last client %q", a.Failures, a.LastClient)
	}
	if u := s.Usage(); len(u.Refusals) < 2 || u.Refusals[0].Group != `{job="c"}` || u.Refusals[0].Client != "192.0.2.7:4242" {
		t.Errorf("refusals of unknown groups: %+v", u.Refusals)
	}
}

// TestPushGzipBombAndLongMessages: a small gzip body that decompresses past the limit is a 413;
// a refusal quoting a huge input stays short.
func TestPushGzipBombAndLongMessages(t *testing.T) {
	s := store.New(store.Options{})
	lim := Limits{MaxBodyBytes: 64 << 10}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("a"), 1<<20))
	zw.Close()
	rec := serve(t, s, lim, nil, "PUT", "/metrics/job/a", gz.String(), "Content-Encoding", "gzip")
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "after decompression") {
		t.Errorf("gzip bomb: %d %s", rec.Code, rec.Body)
	}
	rec = serve(t, s, Limits{MaxBodyBytes: 1 << 20}, nil, "PUT", "/metrics/job/a", "m{l=\""+strings.Repeat("v", 500<<10)+"\n")
	if rec.Code != http.StatusBadRequest || rec.Body.Len() > maxMessage+200 {
		t.Errorf("a refusal of %d bytes (code %d)", rec.Body.Len(), rec.Code)
	}
}

// TestPushWaitsForTheGate: a push that finds the gate full waits; past the wait it gets 503 and
// the relay counts it.
func TestPushWaitsForTheGate(t *testing.T) {
	s := store.New(store.Options{})
	gate := NewGate(1<<20, 1<<20)
	release, err := gate.Enter(context.Background(), -1, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		done <- serve(t, s, Limits{MaxBodyBytes: 1 << 20}, gate, "PUT", "/metrics/job/a", "g 1\n").Code
	}()
	select {
	case code := <-done:
		t.Fatalf("the push went through a full gate: %d", code)
	case <-time.After(100 * time.Millisecond): // it waits: nothing to poll for but its answer
	}
	release()
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the push after the gate opened: %d", code)
	}
}

// TestPushInstrumentation counts pushes by method and code.
func TestPushInstrumentation(t *testing.T) {
	reg := prometheus.NewRegistry()
	in := NewInstrumentation(reg)
	s := store.New(store.Options{})
	h := Push(s, true, Limits{}, nil, in, slog.New(slog.DiscardHandler))
	for _, body := range []string{"g 1\n", "g{", "g 2\n"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PUT", "/metrics/job/a", strings.NewReader(body)))
	}
	if got := testutil.ToFloat64(in.pushes.WithLabelValues("PUT", "200")); got != 2 {
		t.Errorf("pushes{PUT,200} = %v", got)
	}
	if got := testutil.ToFloat64(in.pushes.WithLabelValues("PUT", "400")); got != 1 {
		t.Errorf("pushes{PUT,400} = %v", got)
	}
}

// TestSlowBodyLeavesTheGate: a client that takes the whole gate (a body of unknown size) and then
// sends it a byte at a time is cut off once its body is late, with 408, so that the push waiting
// behind it goes through instead of giving up.
func TestSlowBodyLeavesTheGate(t *testing.T) {
	base := bodyBase
	bodyBase = 300 * time.Millisecond
	t.Cleanup(func() { bodyBase = base })

	s := store.New(store.Options{})
	const maxBody = 64 << 10 // 64 KiB: 300 ms + 62.5 ms at 1 MiB/s
	gate := NewGate(maxBody, maxBody)
	in := NewInstrumentation(prometheus.NewRegistry())
	srv := httptest.NewServer(Push(s, true, Limits{MaxBodyBytes: maxBody}, gate, in, slog.New(slog.DiscardHandler)))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /metrics/job/slow HTTP/1.1\r\nHost: relay\r\nContent-Encoding: gzip\r\nContent-Length: 1000\r\n\r\n\x1f")
	promtest.Eventually(t, 10*time.Second, "the slow push to take the gate", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		release, err := gate.Enter(ctx, 1, "")
		if err == nil {
			release()
		}
		return err != nil
	})

	start := time.Now()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/metrics/job/fast", strings.NewReader("g 1\n"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the push behind the slow one: HTTP %d, want 200", resp.StatusCode)
	}
	if waited := time.Since(start); waited > gateWait/2 {
		t.Errorf("the push behind the slow one waited %s", waited)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	slow, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the slow push's answer: %v", err)
	}
	msg, _ := io.ReadAll(slow.Body)
	if slow.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(msg), "KiB/s") {
		t.Errorf("the slow push: HTTP %d %q, want 408 saying the rate", slow.StatusCode, msg)
	}
}

// TestPushReusesBodyBuffersSafely: protobuf bodies are read into buffers that the next push
// reuses; a group pushed from one must keep its names, labels and HELP when another push
// overwrites that buffer with bytes of the same shape.
func TestPushReusesBodyBuffersSafely(t *testing.T) {
	s := store.New(store.Options{})
	body := func(group string, v float64) string {
		var b bytes.Buffer
		enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim))
		for _, name := range []string{"x_" + group, "y_" + group} {
			g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "help of " + group}, []string{"l"})
			g.WithLabelValues("value " + group).Set(v)
			r := prometheus.NewPedanticRegistry()
			r.MustRegister(g)
			mfs, err := r.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if err := enc.Encode(mfs[0]); err != nil {
				t.Fatal(err)
			}
		}
		return b.String()
	}
	for i, group := range []string{"aa", "bb", "cc", "aa", "dd"} {
		rec := serve(t, s, Limits{}, nil, "PUT", "/metrics/job/"+group, body(group, float64(i)), "Content-Type", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
		if rec.Code != http.StatusOK {
			t.Fatalf("push %s: %d %s", group, rec.Code, rec.Body)
		}
	}
	var out bytes.Buffer
	if err := s.WriteText(&out, nil); err != nil {
		t.Fatal(err)
	}
	for group, v := range map[string]string{"aa": "3", "bb": "1", "cc": "2", "dd": "4"} {
		for _, want := range []string{
			"# HELP x_" + group + " help of " + group + "\n",
			"x_" + group + `{instance="",job="` + group + `",l="value ` + group + `"} ` + v + "\n",
			"y_" + group + `{instance="",job="` + group + `",l="value ` + group + `"} ` + v + "\n",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("exposition lacks %q:\n%s", want, out.String())
			}
		}
	}
}
