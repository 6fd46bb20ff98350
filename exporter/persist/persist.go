// Package persist keeps the relay's groups (and the sources registered through the API) in a
// file, so that a relay restart does not lose what operators pushed. The file is written
// atomically (temporary file, fsync, rename, fsync of the directory), periodically and on
// shutdown. A file that can't be read back is reported, moved aside and the relay starts empty:
// persistence must never keep the relay from serving.
package persist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/exporter/store"
)

// Format and Version identify the file; Decode refuses anything else.
const (
	Format  = "opview-relay-persistence"
	Version = 1
)

// maxFamiliesBytes bounds one group's encoded families when decoding.
const maxFamiliesBytes = 256 << 20

// Snapshot is the content of the persistence file.
type Snapshot struct {
	SavedAt time.Time
	Groups  []store.GroupSnapshot
	// Sources registered through the API (flag sources come back from the flags).
	Sources map[string]sources.Spec
}

type fileV1 struct {
	Format  string                  `json:"format"`
	Version int                     `json:"version"`
	SavedAt time.Time               `json:"saved_at"`
	Groups  []groupV1               `json:"groups"`
	Sources map[string]sources.Spec `json:"sources,omitempty"`
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

// Encode writes s in the file format.
func Encode(w io.Writer, s *Snapshot) error {
	f := fileV1{Format: Format, Version: Version, SavedAt: s.SavedAt.UTC(), Sources: s.Sources, Groups: make([]groupV1, 0, len(s.Groups))}
	for _, g := range s.Groups {
		var buf bytes.Buffer
		for _, mf := range g.Families {
			if _, err := protodelim.MarshalTo(&buf, mf); err != nil {
				return fmt.Errorf("group %v: family %s: %w", g.Labels, mf.GetName(), err)
			}
		}
		f.Groups = append(f.Groups, groupV1{
			Labels: g.Labels, LastPush: g.LastPush.UTC(), LastFailure: g.LastFailure.UTC(), LastError: g.LastError,
			Pushes: g.Pushes, Failures: g.Failures, Expired: g.Expired, Families: buf.Bytes(),
		})
	}
	enc := json.NewEncoder(w)
	return enc.Encode(f)
}

// Decode parses a persistence file. It checks the structure only; the store validates the
// groups' content when restoring them, like pushes.
func Decode(b []byte) (*Snapshot, error) {
	var f fileV1
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a valid persistence file (truncated or corrupt?): %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a valid persistence file: data after the end of the document")
	}
	if f.Format != Format {
		return nil, fmt.Errorf("not a persistence file of opview-relay (format %q, want %q)", f.Format, Format)
	}
	if f.Version != Version {
		return nil, fmt.Errorf("persistence file version %d is not supported (want %d)", f.Version, Version)
	}
	s := &Snapshot{SavedAt: f.SavedAt, Sources: f.Sources, Groups: make([]store.GroupSnapshot, 0, len(f.Groups))}
	for i, g := range f.Groups {
		if len(g.Labels) == 0 {
			return nil, fmt.Errorf("group %d has no labels", i)
		}
		gs := store.GroupSnapshot{
			Labels: g.Labels, LastPush: g.LastPush, LastFailure: g.LastFailure, LastError: g.LastError,
			Pushes: g.Pushes, Failures: g.Failures, Expired: g.Expired,
		}
		r := bufio.NewReader(bytes.NewReader(g.Families))
		for {
			mf := &dto.MetricFamily{}
			err := protodelim.UnmarshalOptions{MaxSize: maxFamiliesBytes}.UnmarshalFrom(r, mf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("group %v: family %d: %w", g.Labels, len(gs.Families)+1, err)
			}
			gs.Families = append(gs.Families, mf)
		}
		s.Groups = append(s.Groups, gs)
	}
	return s, nil
}

// WriteFile writes s to path atomically: readers (and a crash) see the old file or the new one,
// never a mix. The file is private (0600): sources' credentials may be in it.
func WriteFile(path string, s *Snapshot) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("persistence file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err = Encode(bw, s); err != nil {
		return fmt.Errorf("persistence file %s: encoding: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("persistence file %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("persistence file %s: fsync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("persistence file %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("persistence file %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // make the rename durable; not every file system supports it
		d.Close()
	}
	return nil
}

// CorruptError reports a persistence file that could not be read back and was moved aside.
type CorruptError struct {
	Path, MovedTo string
	Err           error
}

func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("persistence file %s is unreadable and could not be moved aside: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("persistence file %s is unreadable (moved to %s; starting empty): %v", e.Path, e.MovedTo, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Load reads the persistence file. A missing file is not an error (nil, nil): the first start.
// A file that does not decode is renamed to <path>.corrupt-<UTC time> and a *CorruptError is
// returned, so the caller can log it and start empty.
func Load(path string, now time.Time) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("persistence file %s: %w", path, err)
	}
	s, err := Decode(b)
	if err == nil {
		return s, nil
	}
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("%w (rename: %v)", err, rerr)}
	}
	return nil, &CorruptError{Path: path, MovedTo: aside, Err: err}
}

// Persister saves snapshots to a file at an interval and on demand.
type Persister struct {
	Path     string
	Interval time.Duration
	// Take returns what to save.
	Take   func() (*Snapshot, error)
	Logger *slog.Logger
}

// Save takes a snapshot and writes it.
func (p *Persister) Save() error {
	s, err := p.Take()
	if err != nil {
		return fmt.Errorf("persistence: taking a snapshot: %w", err)
	}
	return WriteFile(p.Path, s)
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
