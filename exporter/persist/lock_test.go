package persist

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/internal/promtest"
)

// TestLockHasOneOwner: while one persister holds the file's lock, another waits, says so once,
// and gives up with ErrLocked when its context ends; once the first unlocks, the second gets it.
func TestLockHasOneOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	first := &Persister{Path: path}
	if err := first.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	var logs promtest.Buffer
	second := &Persister{Path: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 5*lockPoll)
	defer cancel()
	err := second.Lock(ctx)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another relay") {
		t.Fatalf("second Lock while the first holds it: %v, want ErrLocked naming the cause", err)
	}
	if n := strings.Count(logs.String(), "waiting for it"); n != 1 {
		t.Errorf("the wait was logged %d times, want once:\n%s", n, logs.String())
	}

	first.Unlock()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := second.Lock(ctx); err != nil {
		t.Fatalf("Lock after the owner unlocked: %v", err)
	}
	defer second.Unlock()
	if err := first.Lock(ctxDone()); !errors.Is(err, ErrLocked) {
		t.Fatalf("the first persister again while the second holds it: %v, want ErrLocked", err)
	}
}

// TestLockInAMissingDirectory names the file.
func TestLockInAMissingDirectory(t *testing.T) {
	p := &Persister{Path: filepath.Join(t.TempDir(), "missing", "state")}
	err := p.Lock(context.Background())
	if err == nil || !strings.Contains(err.Error(), p.Path) {
		t.Fatalf("Lock in a missing directory: %v, want an error naming %s", err, p.Path)
	}
}

func ctxDone() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
