//go:build linux

package process

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/procfs"
)

// userHZ is the unit of the times in /proc/<pid>/stat, as procfs (and so client_golang) reads
// them.
const userHZ = 100

// maxFileBytes bounds a /proc file read; the largest read here (net/netstat) is a few KiB.
const maxFileBytes = 1 << 20

type collector struct {
	proc string // /proc
	pid  func() int
}

// NewCollector returns a collector of the process metrics of this process, as
// client_golang's collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}) exposes them.
func NewCollector() prometheus.Collector {
	if _, err := procfs.NewDefaultFS(); err != nil {
		// No /proc: the library's collector, which knows what to do about it.
		return collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	}
	return collector{proc: procfs.DefaultMountPoint, pid: os.Getpid}
}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cpuTotalDesc, openFDsDesc, maxFDsDesc, vsizeDesc, maxVsizeDesc, rssDesc, startDesc, inBytesDesc, outBytesDesc} {
		ch <- d
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// Collect reads the files client_golang's collector reads, in the same order, and like it skips
// the metrics of a file it cannot read or parse (it does not report errors).
func (c collector) Collect(ch chan<- prometheus.Metric) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	p, err := procfs.NewFS(c.proc)
	if err != nil {
		return
	}
	proc, err := p.Proc(c.pid())
	if err != nil {
		return
	}
	dir := c.proc + "/" + strconv.Itoa(proc.PID) + "/"

	if b, err := readFile(bp, dir+"stat"); err == nil {
		if st, err := parseStat(b); err == nil {
			ch <- prometheus.MustNewConstMetric(cpuTotalDesc, prometheus.CounterValue, float64(st.utime+st.stime)/userHZ)
			ch <- prometheus.MustNewConstMetric(vsizeDesc, prometheus.GaugeValue, float64(st.vsize))
			ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(st.rss*os.Getpagesize()))
			if b, err := readFile(bp, c.proc+"/stat"); err == nil {
				if btime, err := parseBootTime(b); err == nil {
					ch <- prometheus.MustNewConstMetric(startDesc, prometheus.GaugeValue, float64(btime)+float64(st.starttime)/userHZ)
				}
			}
		}
	}

	if fds, err := proc.FileDescriptorsLen(); err == nil {
		ch <- prometheus.MustNewConstMetric(openFDsDesc, prometheus.GaugeValue, float64(fds))
	}

	if b, err := readFile(bp, dir+"limits"); err == nil {
		if files, space, err := parseLimits(b); err == nil {
			ch <- prometheus.MustNewConstMetric(maxFDsDesc, prometheus.GaugeValue, float64(files))
			ch <- prometheus.MustNewConstMetric(maxVsizeDesc, prometheus.GaugeValue, float64(space))
		}
	}

	if b, err := readFile(bp, dir+"net/netstat"); err == nil {
		if in, out, err := parseNetstat(b); err == nil {
			ch <- prometheus.MustNewConstMetric(inBytesDesc, prometheus.CounterValue, in)
			ch <- prometheus.MustNewConstMetric(outBytesDesc, prometheus.CounterValue, out)
		}
	}
}

// readFile reads a /proc file into *bp (reused), at most maxFileBytes of it.
func readFile(bp *[]byte, name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			if len(b) >= maxFileBytes {
				return nil, errors.New("file too large")
			}
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	*bp = b
	return b, nil
}

var errParse = errors.New("unexpected format")

type stat struct {
	utime, stime, starttime, vsize uint64
	rss                            int
}

// parseStat reads the fields of /proc/<pid>/stat that the metrics need: those after the
// command's closing parenthesis, counted from 0 (the state), are utime 11, stime 12,
// starttime 19, vsize 20 and rss 21.
func parseStat(b []byte) (stat, error) {
	var st stat
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errParse
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 22 {
		return st, errParse
	}
	var err error
	u := func(s []byte) uint64 {
		v, e := strconv.ParseUint(string(s), 10, 64)
		err = errors.Join(err, e)
		return v
	}
	st.utime, st.stime, st.starttime, st.vsize = u(f[11]), u(f[12]), u(f[19]), u(f[20])
	rss, e := strconv.Atoi(string(f[21]))
	st.rss = rss
	return st, errors.Join(err, e)
}

// parseBootTime reads the btime line of /proc/stat.
func parseBootTime(b []byte) (uint64, error) {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return 0, errParse
}

// parseLimits reads the soft limits on open files and address space from
// /proc/<pid>/limits; "unlimited" is the largest uint64, as procfs reads it.
func parseLimits(b []byte) (files, space uint64, err error) {
	found := 0
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		var dst *uint64
		var rest []byte
		if v, ok := bytes.CutPrefix(line, []byte("Max open files ")); ok {
			dst, rest = &files, v
		} else if v, ok := bytes.CutPrefix(line, []byte("Max address space ")); ok {
			dst, rest = &space, v
		} else {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0, 0, errParse
		}
		if string(f[0]) == "unlimited" {
			*dst = math.MaxUint64
		} else if *dst, err = strconv.ParseUint(string(f[0]), 10, 64); err != nil {
			return 0, 0, err
		}
		found++
	}
	if found != 2 {
		return 0, 0, errParse
	}
	return files, space, nil
}

// parseNetstat reads InOctets and OutOctets of the IpExt lines of /proc/<pid>/net/netstat (0
// when absent, as client_golang exposes them).
func parseNetstat(b []byte) (in, out float64, err error) {
	for len(b) > 0 {
		var names, values []byte
		names, b, _ = bytes.Cut(b, []byte{'\n'})
		values, b, _ = bytes.Cut(b, []byte{'\n'})
		if !bytes.HasPrefix(names, []byte("IpExt: ")) {
			continue
		}
		n, v := bytes.Split(names, []byte{' '}), bytes.Split(values, []byte{' '})
		if len(n) != len(v) {
			return 0, 0, errParse
		}
		for i := 1; i < len(n); i++ {
			var dst *float64
			switch string(n[i]) {
			case "InOctets":
				dst = &in
			case "OutOctets":
				dst = &out
			default:
				continue
			}
			if *dst, err = strconv.ParseFloat(string(v[i]), 64); err != nil {
				return 0, 0, err
			}
		}
	}
	return in, out, nil
}
