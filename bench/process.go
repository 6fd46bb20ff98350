package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// Process is a server under test, started by Start.
type Process struct {
	Name string
	Base string // http://127.0.0.1:port
	cmd  *exec.Cmd
	done chan error
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start runs argv(addr) on a free loopback address with env added to this process's
// environment, its output in logDir/<name>.log, and waits until GET /-/ready answers 200.
func Start(ctx context.Context, name, logDir string, env []string, argv func(addr string) []string) (*Process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := argv(addr)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	logFile := filepath.Join(logDir, name+".log")
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, args[0], err)
	}
	p := &Process{Name: name, Base: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); lf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.Base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v (log: %s)", name, err, logFile)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s not ready on %s after 30s (log: %s)", name, p.Base, logFile)
		}
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 10s.
func (p *Process) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// RSS is the process's resident set size.
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// CPUSeconds is the CPU time the process has used (user and system).
func (p *Process) CPUSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseVmRSS reads VmRSS from the text of /proc/<pid>/status, in bytes.
func parseVmRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS line in /proc/<pid>/status")
}

// parseStatCPU reads utime+stime from the text of /proc/<pid>/stat, in seconds.
func parseStatCPU(stat []byte) (float64, error) {
	// The command name (field 2) is in parentheses and may contain spaces and parentheses: the
	// fields that follow start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/<pid>/stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("/proc/<pid>/stat: too few fields")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks, nil
}

// Version is the first line a binary prints with args (e.g. --version).
func Version(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// LoadAvg is the 1, 5 and 15 minute load average.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// CPUModel is the first model name of /proc/cpuinfo.
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return ""
}

// CPUSample is the machine's busy CPU time and the run's own: this process's, its children's that
// were waited for, and the running servers', to tell the run's CPU from other processes'.
type CPUSample struct {
	Busy, Own time.Duration
	ok        bool
}

// userHZ is the unit of /proc/stat on Linux (USER_HZ, 100 on every architecture Go supports).
const userHZ = 100

// SampleCPU reads /proc/stat's cpu line (user, nice, system, irq, softirq and steal: time the
// run could not have), getrusage of the process and its children, and the running servers' CPU.
func SampleCPU(running ...*Process) CPUSample {
	var s CPUSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return s
		}
		busy += v
	}
	s.Busy = time.Duration(busy) * time.Second / userHZ
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			return s
		}
		s.Own += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, p := range running {
		sec, err := p.CPUSeconds()
		if err != nil {
			return s
		}
		s.Own += time.Duration(sec * float64(time.Second))
	}
	s.ok = true
	return s
}

// OtherCPU is the share of the machine's CPU time (elapsed times cores) that went to other
// processes between two samples, stolen time included; false when either sample failed.
func OtherCPU(start, end CPUSample, elapsed time.Duration, cores int) (float64, bool) {
	if !start.ok || !end.ok || elapsed <= 0 || cores <= 0 {
		return 0, false
	}
	other := (end.Busy - start.Busy) - (end.Own - start.Own)
	return max(0, other.Seconds()/(elapsed.Seconds()*float64(cores))), true
}
