//go:build e2e

package framework

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// failures are the scenario's failure messages, kept to be said again after the logs' tails: a
// failed run's output ends with what failed, not with the last process's log.
var failures struct {
	mu   sync.Mutex
	list []string
}

func record(t testing.TB, msg string) {
	const max = 2000
	if len(msg) > max {
		msg = msg[:max] + "…"
	}
	failures.mu.Lock()
	defer failures.mu.Unlock()
	failures.list = append(failures.list, t.Name()+": "+msg)
}

// Fatalf is t.Fatalf, the message kept for PrintFailures.
func Fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	record(t, fmt.Sprintf(format, args...))
	t.Fatalf(format, args...)
}

// Fatal is t.Fatal, the message kept for PrintFailures.
func Fatal(t testing.TB, args ...any) {
	t.Helper()
	record(t, fmt.Sprint(args...))
	t.Fatal(args...)
}

// Errorf is t.Errorf, the message kept for PrintFailures.
func Errorf(t testing.TB, format string, args ...any) {
	t.Helper()
	record(t, fmt.Sprintf(format, args...))
	t.Errorf(format, args...)
}

// Error is t.Error, the message kept for PrintFailures.
func Error(t testing.TB, args ...any) {
	t.Helper()
	record(t, fmt.Sprint(args...))
	t.Error(args...)
}

// summarized are the tests whose failures are said again at their end.
var summarized sync.Map

// summarizeFailures makes t say again, if it fails, what failed, after every log tail: the
// first cleanup registered runs last.
func summarizeFailures(t testing.TB) {
	if _, done := summarized.LoadOrStore(t, true); !done {
		t.Cleanup(func() {
			if t.Failed() {
				printFailures(t)
			}
		})
	}
}

// printFailures says again what failed in t and its subtests.
func printFailures(t testing.TB) {
	failures.mu.Lock()
	var mine []string
	for _, f := range failures.list {
		if strings.HasPrefix(f, t.Name()+"/") || strings.HasPrefix(f, t.Name()+":") {
			mine = append(mine, f)
		}
	}
	failures.mu.Unlock()
	if len(mine) == 0 {
		t.Logf("===== %s failed: the failure is above, before the logs' tails =====", t.Name())
		return
	}
	t.Logf("===== %s failed (after the logs' tails, what failed) =====\n%s", t.Name(), strings.Join(mine, "\n"))
}
