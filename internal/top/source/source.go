// Package source fetches one operator's metrics for the terminal view: from the operator's
// /metrics (HTTP, or kubebuilder's HTTPS with a bearer token, through the forwarder's scraper),
// from a relay's /metrics narrowed to one pushed group (job, instance), or once from a saved
// exposition file or standard input.
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/exporter/forward"
)

// Config says where the metrics come from.
type Config struct {
	// Target is an http(s):// URL, a file path, or "-" for standard input.
	Target string
	// For HTTPS endpoints (the forwarder's --from.* flags).
	BearerTokenFile    string
	CAFile             string
	InsecureSkipVerify bool
	Timeout            time.Duration
	// Job and Instance pick one pushed group out of a relay's exposition.
	Job, Instance string
	// MaxBytes bounds what is read of an exposition: a file, standard input or an HTTP answer.
	MaxBytes int64
	// MaxSeries bounds the series kept from one scrape (after the group is picked).
	MaxSeries int
	// Keep names the families kept (all when empty).
	Keep []string
	// Stdin is read for Target "-".
	Stdin io.Reader
}

// Source fetches parsed metric families.
type Source struct {
	cfg   Config
	fetch func(context.Context) ([]*dto.MetricFamily, error)
	once  bool
	keep  map[string]bool

	mu    sync.Mutex // group is written by Fetch (the view's scrape goroutine), read by String
	group string
}

// New checks the configuration (URL, token and CA files) and returns the source.
func New(cfg Config) (*Source, error) {
	s := &Source{cfg: cfg}
	if len(cfg.Keep) > 0 {
		s.keep = map[string]bool{}
		for _, k := range cfg.Keep {
			s.keep[k] = true
		}
	}
	if cfg.Instance != "" && cfg.Job == "" {
		return nil, errors.New("--instance needs --job (the pushed group's job label)")
	}
	switch {
	case strings.HasPrefix(cfg.Target, "http://") || strings.HasPrefix(cfg.Target, "https://"):
		f, err := httpScraper(cfg)
		if err != nil {
			return nil, err
		}
		s.fetch = f
	case cfg.Target == "":
		return nil, errors.New("give the operator's metrics URL (http://localhost:8080/metrics), a relay's URL with --job, a saved exposition file, or - for standard input")
	case strings.Contains(cfg.Target, "://"):
		return nil, fmt.Errorf("source %q: want an http:// or https:// URL, a file, or - for standard input", excerpt(cfg.Target))
	default:
		if cfg.BearerTokenFile != "" || cfg.CAFile != "" || cfg.InsecureSkipVerify {
			return nil, errors.New("--from.token-file, --from.ca-file and --from.insecure-skip-verify apply to https:// URLs only")
		}
		if cfg.Target != "-" {
			if _, err := os.Stat(cfg.Target); err != nil {
				return nil, fmt.Errorf("exposition file: %w", err)
			}
		}
		s.once = true
		s.fetch = s.readFile
	}
	return s, nil
}

// httpScraper is the one function that uses the forwarder's scraper, so that its flags, TLS and
// token handling and error messages are the same as opview-relay forward's.
func httpScraper(cfg Config) (func(context.Context) ([]*dto.MetricFamily, error), error) {
	sc, err := forward.NewScraper(forward.Target{
		URL:                cfg.Target,
		BearerTokenFile:    cfg.BearerTokenFile,
		CAFile:             cfg.CAFile,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
		Timeout:            cfg.Timeout,
		BodyLimit:          cfg.MaxBytes,
	})
	if err != nil {
		return nil, err
	}
	return sc.Scrape, nil
}

// Once tells whether the source gives one scrape only (a file or standard input).
func (s *Source) Once() bool { return s.once }

// String names the source as the header shows it.
func (s *Source) String() string {
	name := s.cfg.Target
	if name == "-" {
		name = "standard input"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.group != "" {
		name += " " + s.group
	}
	return name
}

// Fetch takes one scrape and returns the families of the picked operator.
func (s *Source) Fetch(ctx context.Context) ([]*dto.MetricFamily, error) {
	fams, err := s.fetch(ctx)
	if err != nil {
		return nil, err
	}
	return s.narrow(fams)
}

func (s *Source) readFile(context.Context) ([]*dto.MetricFamily, error) {
	var r io.Reader
	name := "standard input"
	if s.cfg.Target == "-" {
		r = s.cfg.Stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(s.cfg.Target)
		if err != nil {
			return nil, fmt.Errorf("exposition file: %w", err)
		}
		defer f.Close()
		r, name = f, s.cfg.Target
	}
	limit := s.cfg.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than --max-bytes=%d", name, limit)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing %s (Prometheus text format): %w", name, err)
	}
	out := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, nil
}

// narrow keeps the families the view reads and, from a relay's exposition (series carrying a job
// label), the picked group's series. Without --job, a relay holding exactly one group is narrowed
// to it; several groups are an error that lists them.
func (s *Source) narrow(fams []*dto.MetricFamily) ([]*dto.MetricFamily, error) {
	kept := fams[:0:0]
	for _, mf := range fams {
		if s.keep == nil || s.keep[mf.GetName()] {
			kept = append(kept, mf)
		}
	}
	job, instance := s.cfg.Job, s.cfg.Instance
	if job == "" || instance == "" {
		var groups [][2]string
		for _, mf := range kept {
			for _, m := range mf.Metric {
				j, i, ok := groupOf(m)
				if ok && (job == "" || j == job) && !slices.Contains(groups, [2]string{j, i}) {
					groups = append(groups, [2]string{j, i})
				}
			}
		}
		switch {
		case len(groups) == 0 && job != "":
			return nil, fmt.Errorf("no series with job=%q at %s (--job)", excerpt(job), excerpt(s.cfg.Target))
		case len(groups) == 0:
			return s.limit(kept)
		case len(groups) > 1:
			slices.SortFunc(groups, func(a, b [2]string) int { return strings.Compare(a[0]+"\xff"+a[1], b[0]+"\xff"+b[1]) })
			var names []string
			for _, g := range groups[:min(5, len(groups))] {
				names = append(names, fmt.Sprintf("job=%q instance=%q", excerpt(g[0]), excerpt(g[1])))
			}
			if len(groups) > 5 {
				names = append(names, fmt.Sprintf("and %d more", len(groups)-5))
			}
			flag := "--job and --instance"
			if job != "" {
				flag = "--instance"
			}
			return nil, fmt.Errorf("%s holds several operators (%s): pick one with %s", excerpt(s.cfg.Target), strings.Join(names, ", "), flag)
		}
		job, instance = groups[0][0], groups[0][1]
	}
	s.mu.Lock()
	s.group = fmt.Sprintf("{job=%q, instance=%q}", excerpt(job), excerpt(instance))
	s.mu.Unlock()
	out := make([]*dto.MetricFamily, 0, len(kept))
	for _, mf := range kept {
		var ms []*dto.Metric
		for _, m := range mf.Metric {
			if j, i, ok := groupOf(m); ok && j == job && i == instance {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			c := &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type, Unit: mf.Unit, Metric: ms}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no series of the group job=%q instance=%q at %s (--job, --instance)", excerpt(job), excerpt(instance), excerpt(s.cfg.Target))
	}
	return s.limit(out)
}

func (s *Source) limit(fams []*dto.MetricFamily) ([]*dto.MetricFamily, error) {
	if s.cfg.MaxSeries <= 0 {
		return fams, nil
	}
	n := 0 // series as Prometheus stores them: a histogram's buckets, sum and count each count
	for _, mf := range fams {
		for _, m := range mf.Metric {
			switch {
			case m.Histogram != nil:
				n += len(m.Histogram.Bucket) + 3
			case m.Summary != nil:
				n += len(m.Summary.Quantile) + 2
			default:
				n++
			}
		}
	}
	if n > s.cfg.MaxSeries {
		return nil, fmt.Errorf("%s serves %d series of the families opview top reads, more than --max-series=%d", excerpt(s.cfg.Target), n, s.cfg.MaxSeries)
	}
	return fams, nil
}

func groupOf(m *dto.Metric) (job, instance string, ok bool) {
	for _, lp := range m.Label {
		switch lp.GetName() {
		case "job":
			job, ok = lp.GetValue(), true
		case "instance":
			instance = lp.GetValue()
		}
	}
	return job, instance, ok
}

// excerpt bounds a user- or server-supplied string quoted in a message.
func excerpt(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
