package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrLocked is returned by Lock when another process still held the file's lock as ctx ended.
var ErrLocked = errors.New("locked by another process")

// lockPoll is how often Lock tries again while another process holds the lock.
var lockPoll = 200 * time.Millisecond

// LockPath is the lock file of the persistence file at path. It is locked, never written to:
// the persistence file itself is replaced at every save, so it can't carry the lock.
func LockPath(path string) string { return path + ".lock" }

// Lock makes this process the file's only owner until Unlock or its exit (the kernel releases the
// lock of a process that dies, kill -9 included). Two relays on one file would lose pushes: the
// second would restore the file before the first wrote its last save, then overwrite that save,
// and remove the first one's save in progress as a stale temporary file. That is what happens
// when a pod is deleted: its replacement starts while it still stops, on the same volume. While
// another process holds the lock, Lock waits, says so once, and tries again until ctx is done;
// it then returns an error wrapping ErrLocked.
func (p *Persister) Lock(ctx context.Context) error {
	name := LockPath(p.Path)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("persistence file %s: lock: %w", p.Path, err)
	}
	start := time.Now()
	waiting := false
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("persistence file %s: lock %s: %w", p.Path, name, err)
		}
		if ok {
			break
		}
		if !waiting && p.Logger != nil {
			p.Logger.Warn("another process holds the persistence file's lock (the relay this one replaces, still saving?); waiting for it", "lock", name)
		}
		waiting = true
		select {
		case <-ctx.Done():
			f.Close()
			return fmt.Errorf("persistence file %s: %w (%s), still after %s: is another relay using this file?",
				p.Path, ErrLocked, name, time.Since(start).Round(time.Second))
		case <-time.After(lockPoll):
		}
	}
	if waiting && p.Logger != nil {
		p.Logger.Info("persistence file's lock taken", "lock", name, "waited", time.Since(start).Round(time.Millisecond).String())
	}
	p.lock = f
	return nil
}

// Unlock releases the lock Lock took, if any.
func (p *Persister) Unlock() {
	if p.lock != nil {
		p.lock.Close() // closing the descriptor releases the lock
		p.lock = nil
	}
}
