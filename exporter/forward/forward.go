// Package forward scrapes an operator's metrics endpoint and pushes what it reads to a relay: the
// way to meet an operator started with `make run`, which exposes /metrics but pushes nothing.
// `opview-relay forward` runs a Forwarder, which is a pusher.Pusher (the repository's one push
// loop) whose Gatherer scrapes the operator; the relay's pull sources use the same Scraper.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/opview/opview/exporter/pusher"
	"github.com/opview/opview/exporter/scrape"
)

// Config configures a Forwarder.
type Config struct {
	// From is the operator's metrics endpoint.
	From Target
	// To is the relay's base URL (http://relay:9091); pushes go to To/metrics/job/<Job>/instance/<Instance>.
	To string
	// ToTokenFile holds the relay's write token (--web.write-token-file on the relay), read at
	// every push. ToCAFile and ToInsecureSkipVerify are for a relay served over HTTPS.
	ToTokenFile          string
	ToCAFile             string
	ToInsecureSkipVerify bool
	// Job and Instance are the group's labels; Instance defaults to the host name.
	Job, Instance string
	// Interval between pushes; 0 means 15s.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while the relay is unreachable;
	// 0 means 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Side says which end of a forward failed: the operator (scraping it failed), the relay
// (unreachable or failing) or the relay's refusal (rejected).
type Side = pusher.Side

// The sides of a failed forward.
const (
	SideOperator = pusher.SideOperator // scraping the operator failed
	SideRelay    = pusher.SideRelay    // the relay could not be reached or failed (5xx)
	SideRejected = pusher.SideRejected // the relay answered and refused the push (4xx)
)

// Error is a failed forward: which side failed and why. For SideRejected, Code and Reason are
// the relay's status code and answer.
type Error = pusher.Error

// Status is what a Forwarder has done so far.
type Status = pusher.Status

// Forwarder scrapes From and pushes to the relay at an interval.
type Forwarder struct {
	cfg    Config
	pusher *pusher.Pusher
}

// flags names the command-line flag of each pusher.Config field the forwarder sets.
var flags = map[string]string{"URL": "--to", "Job": "--job", "Instance": "--instance", "TokenFile": "--to.token-file"}

// New checks cfg and returns a Forwarder. Its errors name the opview-relay forward flag at fault.
func New(cfg Config) (*Forwarder, error) {
	sc, err := NewScraper(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	tlsCfg, err := TLSConfig(cfg.ToCAFile, cfg.ToInsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("--to.ca-file: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	p, err := pusher.New(pusher.Config{
		URL: cfg.To, Job: cfg.Job, Instance: cfg.Instance, TokenFile: cfg.ToTokenFile,
		Gatherer: scrapeGatherer{sc}, Interval: cfg.Interval,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
		Client: &http.Client{Transport: tr, Timeout: pusher.DefaultTimeout},
		Logger: cfg.Logger,
	})
	if err != nil {
		var ce *pusher.ConfigError
		if errors.As(err, &ce) && flags[ce.Field] != "" {
			return nil, fmt.Errorf("%s: %w", flags[ce.Field], ce.Err)
		}
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{cfg: cfg, pusher: p}, nil
}

// scrapeGatherer is the pusher's Gatherer: one scrape of the operator per push.
type scrapeGatherer struct{ s *Scraper }

func (g scrapeGatherer) Gather() ([]*dto.MetricFamily, error) {
	return g.GatherContext(context.Background())
}

func (g scrapeGatherer) GatherContext(ctx context.Context) ([]*dto.MetricFamily, error) {
	fams, err := g.s.Scrape(ctx)
	if err != nil {
		return nil, &Error{Op: pusher.OpScrape, Side: SideOperator, Err: err}
	}
	return fams, nil
}

// Status returns what the forwarder has done so far.
func (f *Forwarder) Status() Status { return f.pusher.Status() }

// Run forwards until ctx is done, then deletes its group from the relay so that its series go
// stale at once instead of after the relay's TTL; see pusher.Pusher.Start for the retries and
// what is logged. Run returns an error only when the final delete fails.
func (f *Forwarder) Run(ctx context.Context) error {
	f.cfg.Logger.Info("forwarding", "from", scrape.RedactURL(f.cfg.From.URL))
	return f.pusher.Start(ctx)
}

// Once scrapes the operator and pushes the result (PUT: the group is replaced). The error is an
// *Error that says which side failed.
func (f *Forwarder) Once(ctx context.Context) error { return f.pusher.PushOnce(ctx) }

// Delete removes the forwarder's group from the relay.
func (f *Forwarder) Delete(ctx context.Context) error { return f.pusher.Delete(ctx) }
