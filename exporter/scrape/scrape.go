// Package scrape fetches and parses one Prometheus metrics endpoint, with the HTTP client
// settings of a Prometheus scrape config (prometheus/common's config.HTTPClientConfig:
// authorization, basic_auth, tls_config, ...). The forwarder and the relay's pull sources use it.
//
// A scrape is bounded in time (Target.Timeout) and in size (Target.BodyLimit); it follows
// redirects on the same host only, and Target.CheckAddr vets every address actually dialled, so
// that a name that resolves to another address later (DNS rebinding) is caught too. Errors name
// the status code and the Content-Type of a refused answer but never quote its body, and a parse
// error names the format and at most a line number: the endpoint's content never reaches a log,
// an API answer or a status page through an error.
package scrape

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/units"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/expfmt"
)

// acceptHeader asks for delimited protobuf (keeps native histograms and exemplars) and falls back
// to the text format, the two formats every client_golang endpoint serves.
const acceptHeader = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3`

// DefaultTimeout is a scrape's timeout when Target.Timeout is 0: Prometheus's default.
const DefaultTimeout = 10 * time.Second

// maxRedirects bounds a chain of same-host redirects.
const maxRedirects = 5

// Target is a metrics endpoint and how to scrape it.
type Target struct {
	// URL is the endpoint, http:// or https://. A password in its userinfo is sent as basic
	// auth and redacted in every message.
	URL string
	// HTTPClientConfig authenticates and configures TLS as in a Prometheus scrape config. Files it
	// names (credentials_file, ca_file, ...) are read by the scraper: only an operator may set them.
	// With FollowRedirects, redirects are followed on the same scheme, host and port only.
	HTTPClientConfig config.HTTPClientConfig
	// Timeout bounds a whole scrape, from dialling to the last byte parsed; 0 means DefaultTimeout.
	Timeout time.Duration
	// BodyLimit bounds the bytes read of an answer; a larger one is an error. 0: no limit.
	BodyLimit int64
	// CheckAddr, when set, vets every address the scraper is about to connect to (after name
	// resolution, in the dialer): an error refuses the connection.
	CheckAddr func(netip.Addr) error
	// Gate, when set, bounds how many scrapes read and parse an answer at once.
	Gate *Gate
	// Settings name the caller's settings in the hints of error messages.
	Settings Settings
}

// Settings name, in the caller's terms (a flag, a JSON field), where the user fixes what an error
// hint points at. Empty names are left out of the hints.
type Settings struct {
	CA        string // trust a certificate authority, e.g. "--from.ca-file"
	Insecure  string // skip certificate verification, e.g. "--from.insecure-skip-verify"
	Token     string // give a bearer token, e.g. "--from.token-file"
	BodyLimit string // raise Target.BodyLimit
	Timeout   string // raise Target.Timeout
}

// Scraper scrapes one Target. It is safe for concurrent use.
type Scraper struct {
	target Target
	shown  string // the URL with its password redacted
	client *http.Client
}

// New checks t and builds its HTTP client. Files t names (a CA file) may be read here.
func New(t Target) (*Scraper, error) {
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q: want http://host:port/path or https://host:port/path", RedactURL(t.URL))
	}
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.BodyLimit < 0 {
		return nil, errors.New("the body limit must not be negative")
	}
	if err := t.HTTPClientConfig.Validate(); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: t.Timeout, KeepAlive: 30 * time.Second}
	if check := t.CheckAddr; check != nil {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &AddrError{Addr: address, Reason: "not an IP address"}
			}
			a := ap.Addr().Unmap()
			if err := check(a); err != nil {
				return &AddrError{Addr: a.String(), Reason: err.Error()}
			}
			return nil
		}
	}
	client, err := config.NewClientFromConfig(t.HTTPClientConfig, "scrape",
		config.WithUserAgent("opview-relay"),
		config.WithDialContextFunc(dialer.DialContext),
	)
	if err != nil {
		return nil, err
	}
	if t.HTTPClientConfig.FollowRedirects {
		client.CheckRedirect = sameHostRedirects
	}
	return &Scraper{target: t, shown: RedactURL(t.URL), client: client}, nil
}

// Target returns the scraped target.
func (s *Scraper) Target() Target { return s.target }

// AddrError is a connection the Target's CheckAddr refused.
type AddrError struct {
	Addr   string
	Reason string
}

func (e *AddrError) Error() string { return "refused to connect to " + e.Addr + ": " + e.Reason }

// Error is a failed scrape. Msg says what failed without the URL; Error() adds it. Err is the
// cause when it is one of this package's errors (an *AddrError), never one that may quote the
// endpoint's answer.
type Error struct {
	URL string // redacted
	Msg string
	Err error
}

func (e *Error) Error() string { return "GET " + e.URL + ": " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

var errRedirectHost = errors.New("redirect to another host")

func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("more than %d redirects", maxRedirects)
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return errRedirectHost
	}
	return nil
}

// Scrape fetches the target's metrics. Sample timestamps are dropped (the caller serves samples
// as of the last scrape) and families without samples are skipped. Errors are *Error; they name
// the status and Content-Type of a refused answer and, for the usual mistakes, what to change.
func (s *Scraper) Scrape(ctx context.Context) ([]*dto.MetricFamily, error) {
	t := s.target
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, s.fail("%v", err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(t.Timeout.Seconds(), 'f', -1, 64))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, s.statusError(resp)
	}
	format := expfmt.ResponseFormat(resp.Header)
	switch format.FormatType() {
	case expfmt.TypeProtoDelim, expfmt.TypeTextPlain:
	default:
		return nil, s.fail("HTTP 200 with Content-Type %s: not a Prometheus exposition format this relay reads (protobuf or text/plain; version=0.0.4)", contentType(resp))
	}
	if t.BodyLimit > 0 && resp.ContentLength > t.BodyLimit {
		return nil, s.tooLarge()
	}
	if t.Gate != nil {
		if err := t.Gate.enter(ctx); err != nil {
			return nil, s.timedOut()
		}
		defer t.Gate.leave()
	}
	body := &limitedReader{r: resp.Body, left: t.BodyLimit}
	if t.BodyLimit <= 0 {
		body.left = -1
	}
	fams, err := decode(body, format)
	switch {
	case body.exceeded:
		return nil, s.tooLarge()
	case ctx.Err() != nil:
		return nil, s.timedOut()
	case err != nil:
		return nil, s.fail("%v", err)
	}
	return fams, nil
}

// decode parses an exposition. Its errors never quote the content.
func decode(r io.Reader, format expfmt.Format) ([]*dto.MetricFamily, error) {
	dec := expfmt.NewDecoder(r, format)
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if format.FormatType() == expfmt.TypeProtoDelim {
				return nil, fmt.Errorf("the protobuf exposition is invalid at metric family %d", len(out)+1)
			}
			var pe expfmt.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("the text exposition is invalid at line %d", pe.Line)
			}
			return nil, errors.New("the text exposition is invalid")
		}
		if len(mf.Metric) == 0 {
			continue
		}
		for _, m := range mf.Metric {
			m.TimestampMs = nil
		}
		out = append(out, mf)
	}
}

func (s *Scraper) fail(format string, args ...any) error {
	return &Error{URL: s.shown, Msg: fmt.Sprintf(format, args...)}
}

func (s *Scraper) tooLarge() error {
	msg := fmt.Sprintf("the answer is larger than the limit of %s", units.Base2Bytes(s.target.BodyLimit))
	if n := s.target.Settings.BodyLimit; n != "" {
		msg += " (" + n + ")"
	}
	return s.fail("%s", msg)
}

func (s *Scraper) timedOut() error {
	msg := fmt.Sprintf("no complete answer within the scrape timeout of %s", s.target.Timeout)
	if n := s.target.Settings.Timeout; n != "" {
		msg += " (" + n + ")"
	}
	return s.fail("%s", msg)
}

// transportError explains a failed request without repeating the URL the http package puts in
// its errors (with the redirect target's, for a refused redirect).
func (s *Scraper) transportError(ctx context.Context, err error) error {
	var ae *AddrError
	switch {
	case errors.As(err, &ae):
		return &Error{URL: s.shown, Msg: ae.Error(), Err: ae}
	case errors.Is(err, errRedirectHost):
		return s.fail("redirected to another host; redirects are followed on the same scheme, host and port only: give the final URL")
	case ctx.Err() != nil:
		return s.timedOut()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	st := s.target.Settings
	var hint string
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv), strings.Contains(msg, "certificate"):
		hint = "the endpoint's certificate is not trusted; controller-runtime's secure metrics serve a self-signed certificate: " + orList("give the CA that signed it with "+st.CA, "skip verification with "+st.Insecure, st.CA != "", st.Insecure != "")
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		hint = "the endpoint speaks plain HTTP: use an http:// URL"
	case strings.Contains(msg, "connection refused"):
		hint = "nothing listens there: is the operator running, with metrics enabled (kubebuilder: --metrics-bind-address=:8080 --metrics-secure=false, or :8443 for HTTPS)?"
	}
	if hint != "" {
		return s.fail("%s (%s)", msg, hint)
	}
	return s.fail("%s", msg)
}

// statusError names the status and Content-Type of a refused answer, never its body.
func (s *Scraper) statusError(resp *http.Response) error {
	st := s.target.Settings
	code := resp.StatusCode
	var hint string
	switch {
	case code == http.StatusBadRequest && httpsAnswer(resp.Body):
		hint = "the endpoint speaks HTTPS: use an https:// URL"
	case code == http.StatusUnauthorized:
		hint = "the endpoint wants a bearer token (kubebuilder's secure mode: `kubectl create token <service-account>`"
		if st.Token != "" {
			hint += ", given with " + st.Token
		}
		hint += ")"
		if s.hasCredentials() {
			hint = "the endpoint refused the bearer token: it may have expired (kubectl create token lasts an hour by default)"
			if s.target.HTTPClientConfig.BasicAuth != nil {
				hint = "the endpoint refused the user name and password"
			}
		}
	case code == http.StatusForbidden:
		hint = "the token is valid but not allowed to read metrics (kubebuilder: bind the metrics-reader ClusterRole, i.e. get on the non-resource URL /metrics)"
	case code >= 300 && code < 400:
		hint = "redirects are not followed: give the final URL"
	}
	msg := fmt.Sprintf("HTTP %d %s (Content-Type %s)", code, http.StatusText(code), contentType(resp))
	if hint != "" {
		msg += ": " + hint
	}
	return s.fail("%s", msg)
}

func (s *Scraper) hasCredentials() bool {
	c := s.target.HTTPClientConfig
	return c.Authorization != nil || c.BasicAuth != nil || c.OAuth2 != nil || c.BearerToken != "" || c.BearerTokenFile != ""
}

// httpsAnswer reports whether a 400 answer is Go's to a plain HTTP request on an HTTPS port. It
// reads a few bytes and tells only that.
func httpsAnswer(body io.Reader) bool {
	b, _ := io.ReadAll(io.LimitReader(body, 64))
	return strings.Contains(string(b), "HTTP request to an HTTPS server")
}

// contentType quotes an answer's Content-Type, shortened: it comes from the endpoint.
func contentType(resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return "(none)"
	}
	const maxLen = 64
	if len(ct) > maxLen {
		return strconv.Quote(ct[:maxLen]) + "..."
	}
	return strconv.Quote(ct)
}

func orList(a, b string, haveA, haveB bool) string {
	switch {
	case haveA && haveB:
		return a + ", or " + b
	case haveA:
		return a
	case haveB:
		return b
	}
	return "trust its CA or skip verification"
}

// limitedReader reads at most left bytes (left < 0: no limit) and then fails, so that a decoder
// never mistakes a cut answer for a complete one.
type limitedReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

var errBodyLimit = errors.New("body limit exceeded")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		// One more byte tells a body of exactly the limit from a larger one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.exceeded = true
			return 0, errBodyLimit
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Gate bounds how many scrapes read and parse an answer at once, which bounds the memory that
// answers in flight take.
type Gate struct{ slots chan struct{} }

// NewGate returns a Gate for n scrapes at once (at least 1).
func NewGate(n int) *Gate { return &Gate{slots: make(chan struct{}, max(n, 1))} }

func (g *Gate) enter(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gate) leave() { <-g.slots }

// RedactURL returns raw with the password of its userinfo replaced by "xxxxx", for logs, messages
// and pages; a string that does not parse as a URL is replaced entirely.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return "<invalid URL>"
		}
		return raw
	}
	return u.Redacted()
}
