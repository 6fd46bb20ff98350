//go:build linux

package process

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/procfs"
)

func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// writeFile writes content to dir/name, creating its directories: a fake /proc for a test.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func value(mf *dto.MetricFamily) float64 {
	m := mf.Metric[0]
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// The same families as client_golang's collector, with the same metadata, and the same values:
// exact for those that do not move, between two readings of the library for the counters, and
// close for the gauges that move while the test runs.
func TestSameAsClientGolang(t *testing.T) {
	lib := collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	before := gather(t, lib)
	ours := gather(t, NewCollector())
	after := gather(t, lib)
	if len(ours) != len(before) || len(before) != 9 {
		t.Fatalf("%d families; client_golang's collector gives %d (9 expected)", len(ours), len(before))
	}
	for name, want := range before {
		got := ours[name]
		if got == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if got.GetHelp() != want.GetHelp() || got.GetType() != want.GetType() || len(got.Metric) != 1 || len(got.Metric[0].Label) != 0 {
			t.Errorf("%s: got %v, want %v", name, got, want)
			continue
		}
		g, lo, hi := value(got), value(want), value(after[name])
		switch name {
		case "process_start_time_seconds", "process_max_fds", "process_virtual_memory_max_bytes":
			if g != lo || g != hi {
				t.Errorf("%s = %v; client_golang reads %v and %v", name, g, lo, hi)
			}
		case "process_cpu_seconds_total", "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			if g < lo || g > hi {
				t.Errorf("%s = %v; client_golang reads %v before and %v after", name, g, lo, hi)
			}
		default:
			if math.Abs(g-lo) > 0.5*lo+16 {
				t.Errorf("%s = %v; client_golang reads %v before and %v after", name, g, lo, hi)
			}
		}
	}
}

// The parsers against procfs's on files with the awkward cases: a command name with spaces and
// parentheses, unlimited limits, several protocols in net/netstat.
func TestParsersAgreeWithProcfs(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"stat": "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\nctxt 99\nbtime 1796278648\nprocesses 7\nprocs_running 1\nprocs_blocked 0\nsoftirq 55 1 2 3 4 5 6 7 8 9 10\n",
		"42/stat": "42 (a) b (c) S 1 42 42 0 -1 4194560 1534 0 0 0 1234 567 0 0 20 0 9 0 98765 1327284224 12345 " +
			"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
		"42/limits": "Limit                     Soft Limit           Hard Limit           Units     \n" +
			"Max cpu time              unlimited            unlimited            seconds   \n" +
			"Max open files            20000                1048576              files     \n" +
			"Max address space         unlimited            unlimited            bytes     \n" +
			"Max realtime timeout      unlimited            unlimited            us        \n",
		"42/net/netstat": "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 1 2\n" +
			"IpExt: InNoRoutes InOctets OutOctets InCsumErrors\nIpExt: 0 577550646560 574838214097 3\n" +
			"MPTcpExt: MPCapableSYNRX\nMPTcpExt: 5\n",
	}
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	fs, err := procfs.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fs.Proc(42)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	want, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(read("42/stat"))
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(st.utime+st.stime) / userHZ; got != want.CPUTime() {
		t.Errorf("CPU time %v, procfs %v", got, want.CPUTime())
	}
	if st.vsize != uint64(want.VirtualMemory()) || st.rss*os.Getpagesize() != want.ResidentMemory() {
		t.Errorf("vsize %d rss %d, procfs %d %d", st.vsize, st.rss*os.Getpagesize(), want.VirtualMemory(), want.ResidentMemory())
	}
	btime, err := parseBootTime(read("stat"))
	if err != nil {
		t.Fatal(err)
	}
	wantStart, err := want.StartTime()
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(btime) + float64(st.starttime)/userHZ; got != wantStart {
		t.Errorf("start time %v, procfs %v", got, wantStart)
	}

	wantLimits, err := p.Limits()
	if err != nil {
		t.Fatal(err)
	}
	files2, space, err := parseLimits(read("42/limits"))
	if err != nil || files2 != wantLimits.OpenFiles || space != wantLimits.AddressSpace {
		t.Errorf("limits %d %d (%v), procfs %d %d", files2, space, err, wantLimits.OpenFiles, wantLimits.AddressSpace)
	}

	wantNet, err := p.Netstat()
	if err != nil {
		t.Fatal(err)
	}
	in, out, err := parseNetstat(read("42/net/netstat"))
	if err != nil || in != *wantNet.InOctets || out != *wantNet.OutOctets {
		t.Errorf("netstat %v %v (%v), procfs %v %v", in, out, err, *wantNet.InOctets, *wantNet.OutOctets)
	}

	for name, b := range map[string]string{"stat": "(x) S 1", "limits": "Limit\n", "netstat": "IpExt: InOctets OutOctets\nIpExt: 1\n"} {
		var err error
		switch name {
		case "stat":
			_, err = parseStat([]byte(b))
		case "limits":
			_, _, err = parseLimits([]byte(b))
		case "netstat":
			_, _, err = parseNetstat([]byte(b))
		}
		if err == nil {
			t.Errorf("%s %q parsed", name, b)
		}
	}
}

// BenchmarkCollect gathers this collector and client_golang's from a registry, as a scrape does.
func BenchmarkCollect(b *testing.B) {
	for _, c := range []struct {
		name string
		c    prometheus.Collector
	}{{"collector=client_golang", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, {"collector=this", NewCollector()}} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c.c)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBootTimeIsReadOnce: process_start_time_seconds takes the boot time from /proc/stat, which
// the kernel generates anew on every read and which does not change: it is read once, and again
// only while it could not be read.
func TestBootTimeIsReadOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { t.Helper(); writeFile(t, dir, name, content) }
	write("42/stat", "42 (a) S 1 42 42 0 -1 4194560 1534 0 0 0 1234 567 0 0 20 0 9 0 98765 1327284224 12345 "+
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
	c, err := newCollector(dir, 42)
	if err != nil {
		t.Fatal(err)
	}
	start := func() (float64, bool) {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "process_start_time_seconds" {
				return f.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if _, ok := start(); ok {
		t.Fatal("a start time without /proc/stat")
	}
	write("stat", "cpu  1 2 3 4 5 6 7 8 9 10\nbtime 1000\n")
	if got, ok := start(); !ok || got != 1000+987.65 {
		t.Fatalf("start time %v (%v), want 1987.65", got, ok)
	}
	write("stat", "cpu  1 2 3 4 5 6 7 8 9 10\nbtime 5000\n")
	if got, ok := start(); !ok || got != 1000+987.65 {
		t.Fatalf("start time %v (%v) after /proc/stat changed, want the boot time read first (1987.65)", got, ok)
	}
}

// TestFilesAreKeptOpenAndReadFromTheStart: the files are opened once and read again from offset
// 0 on every collection, so a collection sees the file's new content, shorter or longer; a
// descriptor that fails is closed and the file opened again within the same collection.
func TestFilesAreKeptOpenAndReadFromTheStart(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { t.Helper(); writeFile(t, dir, name, content) }
	stat := func(utime int, pad string) string {
		return "42 (a" + pad + ") S 1 42 42 0 -1 4194560 1534 0 0 0 " + strconv.Itoa(utime) + " 0 0 0 20 0 9 0 98765 1327284224 12345 " +
			"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	}
	write("stat", "btime 1000\n")
	write("42/stat", stat(100, ""))
	write("42/limits", "Max open files            20000                1048576              files     \n"+
		"Max address space         unlimited            unlimited            bytes     \n")
	write("42/net/netstat", "IpExt: InOctets OutOctets\nIpExt: 7 9\n")
	c, err := newCollector(dir, 42)
	if err != nil {
		t.Fatal(err)
	}
	cpu := func() float64 {
		t.Helper()
		fams := gather(t, c)
		if f := fams["process_max_fds"]; f == nil || value(f) != 20000 {
			t.Errorf("process_max_fds: %v", f)
		}
		if f := fams["process_network_receive_bytes_total"]; f == nil || value(f) != 7 {
			t.Errorf("process_network_receive_bytes_total: %v", f)
		}
		f := fams["process_cpu_seconds_total"]
		if f == nil {
			t.Fatal("no process_cpu_seconds_total")
		}
		return value(f)
	}
	if got := cpu(); got != 1 {
		t.Fatalf("cpu %v, want 1", got)
	}
	open := append([]*os.File(nil), c.files.open...)
	for i, f := range open {
		if f == nil {
			t.Fatalf("%s not kept open", c.files.names[i])
		}
	}
	write("42/stat", stat(250, strings.Repeat(" x", 5000))) // longer than the first buffer
	if got := cpu(); got != 2.5 {
		t.Fatalf("cpu %v after the file grew, want 2.5", got)
	}
	write("42/stat", stat(300, ""))
	if got := cpu(); got != 3 {
		t.Fatalf("cpu %v after the file shrank, want 3", got)
	}
	for i, f := range c.files.open {
		if f != open[i] {
			t.Errorf("%s opened again", c.files.names[i])
		}
	}

	if err := open[statFile].Close(); err != nil {
		t.Fatal(err)
	}
	write("42/stat", stat(400, ""))
	if got := cpu(); got != 4 {
		t.Fatalf("cpu %v after its descriptor failed, want 4", got)
	}
	if f := c.files.open[statFile]; f == nil || f == open[statFile] {
		t.Error("stat not open again")
	}
}
