package forward

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/common/config"

	"github.com/opview/opview/exporter/scrape"
)

// Target is the operator's metrics endpoint as the forwarder's --from flags give it.
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
	// BodyLimit bounds the bytes read of the answer; 0 means DefaultBodyLimit.
	BodyLimit int64
}

// DefaultBodyLimit bounds an operator's answer when Target.BodyLimit is 0: the largest push body
// a relay accepts by default (a kubebuilder operator serves 20 to 300 KiB).
const DefaultBodyLimit = 16 << 20

// Scraper fetches and parses the operator's exposition.
type Scraper = scrape.Scraper

// fromSettings name the forwarder's flags in the scraper's hints.
var fromSettings = scrape.Settings{CA: "--from.ca-file", Insecure: "--from.insecure-skip-verify", Token: "--from.token-file", BodyLimit: "--from.body-size-limit"}

// NewScraper checks t (a token file must be readable and not empty) and builds its scraper.
func NewScraper(t Target) (*Scraper, error) {
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
	hc := config.DefaultHTTPClientConfig
	switch {
	case t.BearerToken != "":
		hc.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(t.BearerToken)}
	case t.BearerTokenFile != "":
		hc.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: t.BearerTokenFile}
	case t.Username != "":
		hc.BasicAuth = &config.BasicAuth{Username: t.Username, Password: config.Secret(t.Password)}
	}
	hc.TLSConfig = config.TLSConfig{CAFile: t.CAFile, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.BodyLimit <= 0 {
		t.BodyLimit = DefaultBodyLimit
	}
	return scrape.New(scrape.Target{URL: t.URL, HTTPClientConfig: hc, Timeout: t.Timeout, BodyLimit: t.BodyLimit, Settings: fromSettings})
}

// TLSConfig builds a client TLS configuration from a CA file and the skip-verification switch.
func TLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	return config.NewTLSConfig(&config.TLSConfig{CAFile: caFile, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12})
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
