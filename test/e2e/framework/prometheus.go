//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus is a client of a Prometheus HTTP API reached through a Traefik route: requests go to
// Base with the route's Host header and, when User is set, basic auth.
type Prometheus struct {
	API              promv1.API
	Base, Host, User string
}

// hostAuth sets the Host header and basic auth on every request.
type hostAuth struct {
	host, user, password string
	next                 http.RoundTripper
}

func (h hostAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if h.host != "" {
		req.Host = h.host
	}
	if h.user != "" {
		req.SetBasicAuth(h.user, h.password)
	}
	return h.next.RoundTrip(req)
}

// NewPrometheus returns a client for the Prometheus behind base (e.g. http://NodeIP:80) and host.
func NewPrometheus(base, host, user, password string) (*Prometheus, error) {
	return NewPrometheusVia(base, host, user, password, http.DefaultTransport)
}

// NewPrometheusVia is NewPrometheus with the connections made by rt (such as a Netns's
// Transport, for a client on another network).
func NewPrometheusVia(base, host, user, password string, rt http.RoundTripper) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: base, RoundTripper: hostAuth{host, user, password, rt}})
	if err != nil {
		return nil, err
	}
	return &Prometheus{API: promv1.NewAPI(c), Base: base, Host: host, User: user}, nil
}

// Query runs an instant query now and returns its vector.
func (p *Prometheus) Query(ctx context.Context, q string) (model.Vector, error) {
	v, _, _, err := p.API.Query(ctx, q, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %q: result type %s, want vector", q, v.Type())
	}
	return vec, nil
}

// QueryRange runs a range query and returns its matrix.
func (p *Prometheus) QueryRange(ctx context.Context, q string, r promv1.Range) (model.Matrix, error) {
	v, _, _, err := p.API.QueryRange(ctx, q, r)
	if err != nil {
		return nil, fmt.Errorf("range query %q: %w", q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query %q: result type %s, want matrix", q, v.Type())
	}
	return m, nil
}

// HasSeries is a WaitFor condition: q returns at least one series.
func (p *Prometheus) HasSeries(q string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		res, err := p.Query(ctx, q)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("%s: no series yet", q)
		}
		return nil
	}
}

// NoSeries is a WaitFor condition: q returns no series.
func (p *Prometheus) NoSeries(q string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		res, err := p.Query(ctx, q)
		if err != nil {
			return err
		}
		if len(res) > 0 {
			return fmt.Errorf("%s still has %d series", q, len(res))
		}
		return nil
	}
}
