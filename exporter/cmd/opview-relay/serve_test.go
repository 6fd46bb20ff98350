package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/exporter/persist"
	"github.com/opview/opview/exporter/store"
	"github.com/opview/opview/internal/promtest"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe runs the serve command with args until the test ends (then stops it as SIGTERM
// does, expecting a clean exit), waits for it to be ready and returns its base URL and log.
func startServe(t *testing.T, args ...string) (string, *promtest.Buffer) {
	t.Helper()
	url, logs, done := startServeNoWait(t, append([]string{"serve"}, args...))
	waitReady(t, url, done, logs)
	return url, logs
}

// startServeNoWait runs the command line args on a free address until the test ends (then
// stops it as SIGTERM does, expecting a clean exit) and returns its base URL, its log, and
// the channel its exit code comes on if it stops before.
func startServeNoWait(t *testing.T, args []string) (string, *promtest.Buffer, <-chan int) {
	t.Helper()
	addr := freeAddr(t)
	logs := &promtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append(args, "--web.listen-address="+addr), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d after SIGTERM; log:\n%s", code, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("relay did not shut down")
		}
	})
	return "http://" + addr, logs, done
}

// waitReady waits for the relay at url to answer /-/ready, failing if it exits first.
func waitReady(t *testing.T, url string, done <-chan int, logs *promtest.Buffer) {
	t.Helper()
	promtest.Eventually(t, time.Minute, url+" to be ready", func() bool {
		select {
		case code := <-done:
			t.Fatalf("relay exited %d:\n%s", code, logs.String())
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestSlowScrapeReaderIsCutOff: a client that requests /metrics and never reads is cut off after
// the write timeout, so it can't keep the connection, and the exposition it pinned, forever.
func TestSlowScrapeReaderIsCutOff(t *testing.T) {
	// ~12 MB of exposition, more than the sockets' buffers hold: 100 groups of a controller-runtime
	// payload, stored in process and handed to the relay as its persistence file (pushed over
	// HTTP, each push would have to beat the shortened write timeout too).
	payload, err := os.ReadFile("../../../bench/testdata/controller-runtime.prom")
	if err != nil {
		t.Fatal(err)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	parsed, err := tp.TextToMetricFamilies(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var fams []*dto.MetricFamily
	for _, mf := range parsed {
		fams = append(fams, mf)
	}
	st := store.New(store.Options{})
	for i := range 100 {
		if _, err := st.Push(store.PushRequest{Key: store.MustKey("job", "op", "instance", fmt.Sprintf("i%d", i)), Families: fams, Replace: true}); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := (&persist.Persister{Path: state, Groups: st.Snapshot}).Save(); err != nil {
		t.Fatal(err)
	}
	saved := httpLimits
	httpLimits.writeTimeout = time.Second
	t.Cleanup(func() { httpLimits = saved })
	url, logs := startServe(t, "--persistence.file="+state, "--persistence.interval=0")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: relay\r\nAccept: text/plain;version=0.0.4\r\n\r\n")
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.Atoi(resp.Header.Get("Content-Length"))
	if want < 8<<20 {
		t.Fatalf("exposition of %d bytes: too small for the test", want)
	}
	// The relay gives up on the reader once the write timeout passes: its write fails and the
	// handler returns, letting go of the exposition it was sending.
	promtest.Eventually(t, 15*time.Second, "the relay to cut the slow reader off", func() bool {
		return strings.Contains(logs.String(), "writing /metrics") && strings.Contains(logs.String(), "i/o timeout")
	})
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if got, _ := io.Copy(io.Discard, resp.Body); got >= int64(want) {
		t.Fatalf("the slow reader got all %d bytes: it was not cut off", got)
	}
}

// TestPortInUseIsTheOnlyThingSaid: a port already taken is reported, naming the flag, and the
// relay never says it started.
func TestPortInUseIsTheOnlyThingSaid(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs bytes.Buffer
	code := run(context.Background(), []string{"serve", "--web.listen-address=" + l.Addr().String()}, io.Discard, &logs)
	if code == 0 || !strings.Contains(logs.String(), "--web.listen-address="+l.Addr().String()) || strings.Contains(logs.String(), "started") {
		t.Fatalf("exit %d, log:\n%s", code, logs.String())
	}
}

// TestOpenWritesWarnBeyondLoopback: a relay without a token that listens beyond loopback says
// that anyone reaching it can write; on loopback (make run) it does not.
func TestOpenWritesWarnBeyondLoopback(t *testing.T) {
	_, logs := startServe(t)
	if strings.Contains(logs.String(), "writes are open") {
		t.Errorf("warned on loopback:\n%s", logs.String())
	}
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":"):]
	lan := &promtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--web.listen-address=0.0.0.0" + port}, io.Discard, lan) }()
	promtest.Eventually(t, 10*time.Second, "the relay to start", func() bool { return strings.Contains(lan.String(), "started") })
	cancel()
	<-done
	if !strings.Contains(lan.String(), "writes are open") || !strings.Contains(lan.String(), "--web.write-token-file") {
		t.Errorf("no warning for open writes on 0.0.0.0:\n%s", lan.String())
	}
}

// TestPersistenceFileInAMissingDirectory is refused at start, naming the flag.
func TestPersistenceFileInAMissingDirectory(t *testing.T) {
	var logs bytes.Buffer
	file := filepath.Join(t.TempDir(), "missing", "state")
	code := run(context.Background(), []string{"serve", "--web.listen-address=" + freeAddr(t), "--persistence.file=" + file}, io.Discard, &logs)
	if code != 2 || !strings.Contains(logs.String(), "--persistence.file") {
		t.Fatalf("exit %d, log:\n%s", code, logs.String())
	}
}

// TestStatusPageShowsTheFlags: the status page lists the settings as the flags gave them, the
// byte budget as it resolved.
func TestStatusPageShowsTheFlags(t *testing.T) {
	url, _ := startServe(t, "--group.ttl=7m", "--store.max-bytes=3MiB")
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"--group.ttl=7m0s", "--store.max-bytes=3MiB", "--push.label-limit=64", "of its 3.0 MiB budget"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}

// serve's flag errors end the command with exit code 2 and name the flag or the file at fault.
func TestServeFlagErrorsNameTheFlag(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--source", "no-url"}, "--source"},
		{[]string{"serve", "--source", "a=http://x/metrics", "--source", "a=http://y/metrics"}, "given twice"},
		{[]string{"serve", "--web.write-token-file", empty}, "--web.write-token-file"},
		{[]string{"serve", "--persistence.interval", "-1s"}, "--persistence.interval"},
	} {
		var out promtest.Buffer
		code := run(context.Background(), c.args, &out, &out)
		if code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q; want 2 mentioning %q", c.args, code, out.String(), c.want)
		}
	}
}

// serve with a pull source, a write token and a persistence file, run as the command runs: the
// source is scraped, the group is saved on shutdown.
func TestServeSourcesTokenPersistence(t *testing.T) {
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("# TYPE widgets_total counter\nwidgets_total 5\n"))
	}))
	defer op.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(dir, "state.json")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out promtest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--web.listen-address=" + addr, "--source", "lan=" + op.URL + "/metrics",
			"--web.write-token-file", tokenFile, "--persistence.file", stateFile}, &out, &out)
	}()
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if strings.Contains(b.String(), `widgets_total{instance="`+strings.TrimPrefix(op.URL, "http://")+`",job="lan"} 5`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the --source's samples never reached /metrics; log:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, with a deadline
	}
	resp, err := http.Post(url+"/metrics/job/cli", "text/plain", strings.NewReader("cli_test 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("push without the token: %d", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, out.String())
	}
	_, groups, err := persist.ReadFile(stateFile)
	if err != nil || len(groups) != 1 || groups[0].Labels["job"] != "lan" {
		t.Fatalf("state saved on shutdown: %+v %v", groups, err)
	}
}

// TestReplacementWaitsForThePersistenceFile is what deleting the relay's pod does: the
// replacement starts on the same volume while the relay it replaces still runs. It waits for the
// file's lock, so the groups pushed to the old relay until its last moment come back; without the
// lock it would have restored a file without them and later saved over theirs.
func TestReplacementWaitsForThePersistenceFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state")
	args := []string{"serve", "--persistence.file=" + file, "--persistence.interval=0"}

	oldURL := "http://" + freeAddr(t)
	oldLogs := &promtest.Buffer{}
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	odone := make(chan int, 1)
	go func() {
		odone <- run(octx, append(args, "--web.listen-address="+strings.TrimPrefix(oldURL, "http://")), io.Discard, oldLogs)
	}()
	waitReady(t, oldURL, odone, oldLogs)
	putGroup(t, oldURL, "before")

	newURL, newLogs, newDone := startServeNoWait(t, args)
	promtest.Eventually(t, time.Minute, "the new relay to wait for the lock (or, without one, to serve)", func() bool {
		if strings.Contains(newLogs.String(), "waiting for it") {
			return true
		}
		resp, err := http.Get(newURL + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	putGroup(t, oldURL, "late") // after the new relay started: only the lock keeps it

	ocancel()
	if code := <-odone; code != 0 {
		t.Fatalf("old relay exit %d:\n%s", code, oldLogs.String())
	}
	waitReady(t, newURL, newDone, newLogs)
	body := get(t, newURL+"/metrics")
	for _, job := range []string{"before", "late"} {
		if !strings.Contains(body, `job="`+job+`"`) {
			t.Errorf("the new relay lost group %s pushed to the old one:\n%s", job, newLogs.String())
		}
	}
	if !strings.Contains(newLogs.String(), "lock taken") {
		t.Errorf("the new relay does not say it took the lock:\n%s", newLogs.String())
	}
}

func putGroup(t *testing.T, url, job string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+"/metrics/job/"+job, strings.NewReader("# TYPE witness gauge\nwitness 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push %s: HTTP %d", job, resp.StatusCode)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
