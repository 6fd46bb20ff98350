// Package persist keeps the relay's groups (and the sources registered through the API) in a
// file, so that a relay restart does not lose what operators pushed. The file is written
// atomically (temporary file, fsync, rename, fsync of the directory), periodically and on
// shutdown, and both ways it is streamed a group at a time: saving or loading needs the memory
// of one group, not of the store. A file that can't be read back is reported and moved aside,
// and the relay serves what it could read: persistence must never keep the relay from serving.
package persist

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/opview/opview/exporter/store"
)

// Format and Version identify the file; Decode refuses anything else.
const (
	Format  = "opview-relay-persistence"
	Version = 1
)

// Header is what the file holds besides its groups.
type Header struct {
	SavedAt time.Time
	// Sources are the pull sources registered through the API, as the sources package encodes
	// them (flag sources come back from the flags).
	Sources json.RawMessage
}

type groupV1 struct {
	Labels      map[string]string `json:"labels"`
	LastPush    time.Time         `json:"last_push"`
	LastFailure time.Time         `json:"last_failure,omitzero"`
	LastError   string            `json:"last_error,omitempty"`
	Pushes      uint64            `json:"pushes"`
	Failures    uint64            `json:"failures"`
	Expired     bool              `json:"expired,omitempty"`
	// Families are length-delimited io.prometheus.client.MetricFamily messages (base64 in JSON).
	Families []byte `json:"families,omitempty"`
}

// Groups calls fn for every group to save, one at a time (store.MemoryStore.Snapshot).
type Groups func(fn func(store.GroupSnapshot) error) error

// Encode writes the file: the header, then every group, one at a time.
func Encode(w io.Writer, h Header, groups Groups) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	saved, err := json.Marshal(h.SavedAt.UTC())
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, `{"format":%q,"version":%d,"saved_at":%s`, Format, Version, saved)
	if len(h.Sources) > 0 && string(h.Sources) != "null" {
		if !json.Valid(h.Sources) {
			return errors.New("sources: not valid JSON")
		}
		bw.WriteString(`,"sources":`)
		bw.Write(h.Sources)
	}
	bw.WriteString(`,"groups":[`)
	first := true
	err = groups(func(g store.GroupSnapshot) error {
		b, err := json.Marshal(groupV1{
			Labels: g.Labels, LastPush: g.LastPush.UTC(), LastFailure: g.LastFailure.UTC(), LastError: g.LastError,
			Pushes: g.Pushes, Failures: g.Failures, Expired: g.Expired, Families: g.Families,
		})
		if err != nil {
			return fmt.Errorf("group %v: %w", g.Labels, err)
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.WriteByte('\n')
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// Decode reads a file written by Encode, calling group for each group in file order, and
// returns the header. It checks the file's structure (the families' framing included); the store
// validates the groups' content when restoring them, like pushes. An error from group stops the
// decoding and is returned.
func Decode(r io.Reader, group func(store.GroupSnapshot) error) (*Header, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("not a valid persistence file (truncated or corrupt?): "+format, args...)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, corrupt("%v", err)
	}
	h := &Header{}
	var format string
	version := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, corrupt("%v", err)
		}
		key, _ := tok.(string)
		switch key {
		case "format":
			err = dec.Decode(&format)
		case "version":
			err = dec.Decode(&version)
		case "saved_at":
			err = dec.Decode(&h.SavedAt)
		case "sources":
			err = dec.Decode(&h.Sources)
		case "groups":
			if format != Format {
				return nil, fmt.Errorf("not a persistence file of opview-relay (format %s, want %q)", store.Quote(format, 64), Format)
			}
			if version != Version {
				return nil, fmt.Errorf("persistence file version %d is not supported (want %d)", version, Version)
			}
			if err := decodeGroups(dec, group); err != nil {
				return nil, err
			}
		default:
			return nil, corrupt("unknown field %s", store.Quote(key, 64))
		}
		if err != nil {
			return nil, corrupt("field %s: %v", key, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a valid persistence file: data after the end of the document")
	}
	if format != Format {
		return nil, fmt.Errorf("not a persistence file of opview-relay (format %s, want %q)", store.Quote(format, 64), Format)
	}
	if version != Version {
		return nil, fmt.Errorf("persistence file version %d is not supported (want %d)", version, Version)
	}
	return h, nil
}

func decodeGroups(dec *json.Decoder, group func(store.GroupSnapshot) error) error {
	if err := expectDelim(dec, '['); err != nil {
		return fmt.Errorf("not a valid persistence file: groups: %v", err)
	}
	for i := 0; dec.More(); i++ {
		var g groupV1
		if err := dec.Decode(&g); err != nil {
			return fmt.Errorf("not a valid persistence file (truncated or corrupt?): group %d: %v", i+1, err)
		}
		if len(g.Labels) == 0 {
			return fmt.Errorf("not a valid persistence file: group %d has no labels", i+1)
		}
		if err := checkFraming(g.Families); err != nil {
			return fmt.Errorf("not a valid persistence file: group %d: %v", i+1, err)
		}
		err := group(store.GroupSnapshot{
			Labels: g.Labels, LastPush: g.LastPush, LastFailure: g.LastFailure, LastError: g.LastError,
			Pushes: g.Pushes, Failures: g.Failures, Expired: g.Expired, Families: g.Families,
		})
		if err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

// checkFraming checks that b is a sequence of length-delimited messages.
func checkFraming(b []byte) error {
	for n := 1; len(b) > 0; n++ {
		size, k := protowire.ConsumeVarint(b)
		if k < 0 || size > uint64(len(b)-k) {
			return fmt.Errorf("family %d: broken length prefix", n)
		}
		b = b[k+int(size):]
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q", want)
	}
	return nil
}

// CorruptError reports a persistence file that could not be read back whole and was moved aside.
// The groups decoded before the damage were restored.
type CorruptError struct {
	Path, MovedTo string
	Err           error
}

func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("persistence file %s is unreadable and could not be moved aside: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("persistence file %s is unreadable (moved to %s): %v", e.Path, e.MovedTo, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Persister saves the relay's groups and sources to a file at an interval and on demand, and
// loads them back at start.
type Persister struct {
	Path     string
	Interval time.Duration
	// Sources returns the API-added sources to save.
	Sources func() (json.RawMessage, error)
	// Groups gives the groups to save.
	Groups Groups
	Now    func() time.Time
	Logger *slog.Logger

	lock *os.File // held from Lock to Unlock
}

// tempPattern is the name of a save in progress, in the file's directory.
func (p *Persister) tempPattern() string { return "." + filepath.Base(p.Path) + ".tmp-*" }

// Check makes sure the file can be written: its directory exists and is writable. Run it at
// start, so that a wrong path is reported then, not at the first save minutes later.
func (p *Persister) Check() error {
	f, err := os.CreateTemp(filepath.Dir(p.Path), p.tempPattern())
	if err != nil {
		return fmt.Errorf("persistence file %s can't be written: %w", p.Path, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Save writes the file atomically: readers (and a crash) see the old file or the new one, never
// a mix. The file is private (0600): sources' credentials may be in it.
func (p *Persister) Save() (err error) {
	var h Header
	if p.Now != nil {
		h.SavedAt = p.Now()
	} else {
		h.SavedAt = time.Now()
	}
	if p.Sources != nil {
		if h.Sources, err = p.Sources(); err != nil {
			return fmt.Errorf("persistence: sources: %w", err)
		}
	}
	dir := filepath.Dir(p.Path)
	tmp, err := os.CreateTemp(dir, p.tempPattern())
	if err != nil {
		return fmt.Errorf("persistence file %s: %w", p.Path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = Encode(tmp, h, p.Groups); err != nil {
		return fmt.Errorf("persistence file %s: %w", p.Path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("persistence file %s: fsync: %w", p.Path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("persistence file %s: %w", p.Path, err)
	}
	if err = os.Rename(tmp.Name(), p.Path); err != nil {
		return fmt.Errorf("persistence file %s: %w", p.Path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // make the rename durable; not every file system supports it
		d.Close()
	}
	return nil
}

// Load first removes the temporary files of saves that never finished (a crash or kill -9
// mid-save), then reads the file, calling restore for each group. A missing file is not an
// error (nil, nil): the first start. A file that does not decode whole is moved aside to a name
// no other file has, and a *CorruptError is returned; the groups read before the damage were
// given to restore.
func (p *Persister) Load(restore func(store.GroupSnapshot)) (*Header, error) {
	p.removeStaleTemps()
	f, err := os.Open(p.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("persistence file %s: %w", p.Path, err)
	}
	h, err := Decode(bufio.NewReaderSize(f, 256<<10), func(g store.GroupSnapshot) error { restore(g); return nil })
	f.Close()
	if err == nil {
		return h, nil
	}
	aside, rerr := p.moveAside()
	if rerr != nil {
		return nil, &CorruptError{Path: p.Path, Err: fmt.Errorf("%w (rename: %v)", err, rerr)}
	}
	return nil, &CorruptError{Path: p.Path, MovedTo: aside, Err: err}
}

// moveAside renames the file to <path>.corrupt-<UTC time>[-<n>], never over another file.
func (p *Persister) moveAside() (string, error) {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	base := p.Path + ".corrupt-" + now.UTC().Format("20060102T150405.000000000Z")
	for i := 0; i < 100; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		// A hard link fails when the name is taken, unlike a rename; fall back to a checked
		// rename where links are not supported.
		err := os.Link(p.Path, name)
		if err == nil {
			return name, os.Remove(p.Path)
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if _, serr := os.Lstat(name); serr == nil {
			continue
		}
		return name, os.Rename(p.Path, name)
	}
	return "", errors.New("no free name to move the file aside")
}

func (p *Persister) removeStaleTemps() {
	dir := filepath.Dir(p.Path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := "." + filepath.Base(p.Path) + ".tmp-"
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err == nil && p.Logger != nil {
				p.Logger.Info("removed the temporary file of an unfinished save", "file", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// Run saves every Interval until ctx is done. It does not save at the end: the caller saves once
// the server has stopped accepting pushes, so the last pushes are in the file.
func (p *Persister) Run(ctx context.Context) {
	if p.Interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.Save(); err != nil {
			if !failing {
				p.Logger.Error("saving the persistence file failed; retrying at the interval", "err", err)
			}
			failing = true
		} else if failing {
			p.Logger.Info("saving the persistence file works again", "path", p.Path)
			failing = false
		}
	}
}

// ReadFile reads a whole persistence file into memory, for tests and tools; the relay streams
// it with Persister.Load.
func ReadFile(path string) (*Header, []store.GroupSnapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var groups []store.GroupSnapshot
	h, err := Decode(bufio.NewReader(f), func(g store.GroupSnapshot) error { groups = append(groups, g); return nil })
	return h, groups, err
}
