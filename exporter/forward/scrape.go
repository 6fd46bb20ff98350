package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// acceptHeader asks for delimited protobuf (keeps native histograms and exemplars) and falls back
// to the text format, the two formats every client_golang endpoint serves.
const acceptHeader = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3`

// Target is a metrics endpoint to scrape and how to authenticate to it.
type Target struct {
	URL string
	// BearerToken or BearerTokenFile (read at every scrape, so a rotated token is picked up)
	// is sent as "Authorization: Bearer <token>": kubebuilder's secure metrics mode needs one.
	BearerToken     string
	BearerTokenFile string
	// Username and Password for basic auth (instead of a bearer token).
	Username, Password string
	// CAFile verifies the endpoint's certificate; InsecureSkipVerify skips verification (for the
	// self-signed certificate controller-runtime generates when it has none).
	CAFile             string
	InsecureSkipVerify bool
	// Timeout of one scrape; 0 means 10s.
	Timeout time.Duration
}

// Scraper fetches and parses one target's exposition.
type Scraper struct {
	target Target
	client *http.Client
}

// NewScraper checks the target and builds its HTTP client.
func NewScraper(t Target) (*Scraper, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("metrics URL %q: %w", t.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("metrics URL %q: want http://host:port/path or https://host:port/path", t.URL)
	}
	if t.BearerToken != "" && t.BearerTokenFile != "" {
		return nil, errors.New("give a bearer token or a bearer token file, not both")
	}
	if (t.BearerToken != "" || t.BearerTokenFile != "") && t.Username != "" {
		return nil, errors.New("give a bearer token or basic auth, not both")
	}
	if t.BearerTokenFile != "" {
		if _, err := readToken(t.BearerTokenFile); err != nil {
			return nil, err
		}
	}
	tlsCfg, err := TLSConfig(t.CAFile, t.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	if t.Timeout <= 0 {
		t.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.Proxy = nil
	return &Scraper{target: t, client: &http.Client{Transport: tr, Timeout: t.Timeout}}, nil
}

// Target returns the scraped target.
func (s *Scraper) Target() Target { return s.target }

// TLSConfig builds a client TLS configuration from a CA file and the skip-verification switch.
func TLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // the user asked for it
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bearer token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("bearer token file %s is empty", path)
	}
	return tok, nil
}

// Scrape fetches the target's metrics. Sample timestamps are dropped (the relay serves samples
// as of the last scrape) and families without samples are skipped. Errors name the URL and, for
// the usual mistakes, what to change.
func (s *Scraper) Scrape(ctx context.Context) ([]*dto.MetricFamily, error) {
	t := s.target
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", "opview-relay")
	tok := t.BearerToken
	if t.BearerTokenFile != "" {
		if tok, err = readToken(t.BearerTokenFile); err != nil {
			return nil, err
		}
	}
	switch {
	case tok != "":
		req.Header.Set("Authorization", "Bearer "+tok)
	case t.Username != "":
		req.SetBasicAuth(t.Username, t.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, explainTransport(t, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, explainStatus(t, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	format := expfmt.ResponseFormat(resp.Header)
	switch format.FormatType() {
	case expfmt.TypeProtoDelim, expfmt.TypeTextPlain:
	default:
		return nil, fmt.Errorf("GET %s: Content-Type %q is not a Prometheus exposition format this relay reads (protobuf or text/plain; version=0.0.4)", t.URL, resp.Header.Get("Content-Type"))
	}
	dec := expfmt.NewDecoder(resp.Body, format)
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("GET %s: parsing the exposition (%s): %w", t.URL, format, err)
		}
		if len(mf.Metric) == 0 {
			continue
		}
		for _, m := range mf.Metric {
			m.TimestampMs = nil
		}
		out = append(out, mf)
	}
	return out, nil
}

func explainTransport(t Target, err error) error {
	msg := err.Error()
	var hint string
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), strings.Contains(msg, "certificate"):
		hint = "the endpoint's certificate is not trusted; controller-runtime's secure metrics serve a self-signed certificate: pass its CA file or skip verification"
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		hint = "the endpoint speaks plain HTTP: use an http:// URL"
	case strings.Contains(msg, "connection refused"):
		hint = "nothing listens there: is the operator running, with metrics enabled (kubebuilder: --metrics-bind-address=:8080 --metrics-secure=false, or :8443 for HTTPS)?"
	}
	if hint != "" {
		return fmt.Errorf("GET %s: %w (%s)", t.URL, err, hint)
	}
	return fmt.Errorf("GET %s: %w", t.URL, err)
}

func explainStatus(t Target, code int, body string) error {
	var hint string
	switch {
	case code == http.StatusBadRequest && strings.Contains(body, "HTTPS"):
		hint = "the endpoint speaks HTTPS: use an https:// URL"
	case code == http.StatusUnauthorized:
		hint = "the endpoint wants a bearer token (kubebuilder's secure mode: `kubectl create token <service-account>` into a file and pass it)"
		if t.BearerToken != "" || t.BearerTokenFile != "" {
			hint = "the endpoint refused the bearer token: it may have expired (kubectl create token lasts an hour by default)"
		}
	case code == http.StatusForbidden:
		hint = "the token is valid but not allowed to read metrics (kubebuilder: bind the metrics-reader ClusterRole, i.e. get on the non-resource URL /metrics)"
	}
	msg := fmt.Sprintf("GET %s: HTTP %d", t.URL, code)
	if body != "" {
		msg += ": " + body
	}
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return errors.New(msg)
}
