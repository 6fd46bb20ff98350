package sources

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Limits bound what pull sources may cost the relay and what a client of the sources API may
// make it reach. The zero value of a field means its default.
type Limits struct {
	// MaxAPISources bounds the sources added through the API (--sources.max-api-sources).
	MaxAPISources int
	// MinAPIInterval is the shortest interval of a source added through the API
	// (--sources.min-api-interval).
	MinAPIInterval time.Duration
	// AllowCIDRs are addresses a source added through the API may reach although they are
	// loopback, link-local, multicast, unspecified or the relay's own (--sources.allow-cidr).
	AllowCIDRs []netip.Prefix
	// DenyCIDRs are addresses no source added through the API may reach, e.g. the cluster's pod
	// and service networks (--sources.deny-cidr). They win over AllowCIDRs.
	DenyCIDRs []netip.Prefix
	// ScrapeTimeout is the timeout of every source's scrape and the longest a source may ask for
	// (--sources.scrape-timeout).
	ScrapeTimeout time.Duration
	// BodySizeLimit bounds the answer of every source's scrape (--sources.body-size-limit).
	BodySizeLimit int64
	// MaxConcurrentScrapes bounds how many sources' answers are read and parsed at once
	// (--sources.max-concurrent-scrapes), which bounds their memory to about this many times
	// BodySizeLimit times the cost of parsed samples.
	MaxConcurrentScrapes int
}

// Defaults of Limits. A source is a LAN operator's metrics endpoint: a kubebuilder operator serves
// 20 to 300 KiB every scrape.
const (
	DefaultMaxAPISources        = 20
	DefaultMinAPIInterval       = 5 * time.Second
	DefaultScrapeTimeout        = 10 * time.Second
	DefaultBodySizeLimit        = 1 << 20
	DefaultMaxConcurrentScrapes = 2
)

// The flags that set Limits, named in the messages of refused sources.
const (
	FlagConfigFile           = "sources.config-file"
	FlagMaxAPISources        = "sources.max-api-sources"
	FlagMinAPIInterval       = "sources.min-api-interval"
	FlagAllowCIDR            = "sources.allow-cidr"
	FlagDenyCIDR             = "sources.deny-cidr"
	FlagScrapeTimeout        = "sources.scrape-timeout"
	FlagBodySizeLimit        = "sources.body-size-limit"
	FlagMaxConcurrentScrapes = "sources.max-concurrent-scrapes"
	FlagWriteTokenFile       = "web.write-token-file"
)

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxAPISources == 0 {
		l.MaxAPISources = DefaultMaxAPISources
	}
	if l.MinAPIInterval == 0 {
		l.MinAPIInterval = DefaultMinAPIInterval
	}
	if l.ScrapeTimeout == 0 {
		l.ScrapeTimeout = DefaultScrapeTimeout
	}
	if l.BodySizeLimit == 0 {
		l.BodySizeLimit = DefaultBodySizeLimit
	}
	if l.MaxConcurrentScrapes == 0 {
		l.MaxConcurrentScrapes = DefaultMaxConcurrentScrapes
	}
	return l
}

// Validate reports a limit that can't work, naming its flag.
func (l Limits) Validate() error {
	switch {
	case l.MaxAPISources < 0:
		return fmt.Errorf("--%s must not be negative", FlagMaxAPISources)
	case l.MinAPIInterval < 0:
		return fmt.Errorf("--%s must not be negative", FlagMinAPIInterval)
	case l.ScrapeTimeout < 0:
		return fmt.Errorf("--%s must not be negative", FlagScrapeTimeout)
	case l.BodySizeLimit < 0:
		return fmt.Errorf("--%s must not be negative", FlagBodySizeLimit)
	case l.MaxConcurrentScrapes < 0:
		return fmt.Errorf("--%s must not be negative", FlagMaxConcurrentScrapes)
	}
	return nil
}

// checkAddr decides whether a source added through the API may connect to a: not to an address
// in DenyCIDRs; to a loopback, link-local, multicast, unspecified or broadcast address, or one of
// the relay's own, only if AllowCIDRs includes it.
func (l Limits) checkAddr(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range l.DenyCIDRs {
		if p.Contains(a) {
			return fmt.Errorf("in --%s %s", FlagDenyCIDR, p)
		}
	}
	for _, p := range l.AllowCIDRs {
		if p.Contains(a) {
			return nil
		}
	}
	what := specialAddr(a)
	if what == "" && ownAddr(a) {
		what = "one of the relay's own addresses"
	}
	if what == "" {
		return nil
	}
	return fmt.Errorf("%s, which sources added through the API may not reach (the relay's --%s can allow it)", what, FlagAllowCIDR)
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// specialAddr names the kind of a that no LAN operator listens on.
func specialAddr(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "an unspecified address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata services live there)"
	case a.IsMulticast() || a == broadcast:
		return "a multicast or broadcast address"
	}
	return ""
}

// ownAddr reports whether a is an address of one of the relay's network interfaces (in a pod:
// the pod's own address, where the relay's sidecars listen).
func ownAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// errAPIOff is the answer to a write on the sources API of a relay without a write token.
var errAPIOff = errors.New("the sources API is off: adding or removing a pull source makes the relay fetch a URL, so it needs the relay's write token; start the relay with --" + FlagWriteTokenFile + " (sources given by --source or --" + FlagConfigFile + " need no token)")
