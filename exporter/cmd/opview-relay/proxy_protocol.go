package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/pires/go-proxyproto"
)

const proxyProtocolFlag = "web.proxy-protocol.trusted-ips"

// proxyHeaderTimeout bounds how long a connection from a trusted address may take to send its
// PROXY header (the server's own read timeouts bound the rest of the request).
var proxyHeaderTimeout = 5 * time.Second

// proxyTrust is the value of --web.proxy-protocol.trusted-ips: the addresses (load balancers,
// Traefik) whose PROXY protocol header, v1 or v2, the relay believes. Behind such a proxy every
// connection comes from the proxy; the header carries the client's address, which then becomes
// the request's remote address (status page, logs).
//
// A connection from a trusted address may send a header or not (Prometheus and probes don't). From
// any other address a header is read and discarded, never believed: the connection keeps its own
// address, as Traefik's entrypoints do. With no trusted address, connections are not inspected at
// all and a PROXY header is just a malformed request.
type proxyTrust struct {
	prefixes []netip.Prefix
}

// addProxyProtocolFlag registers --web.proxy-protocol.trusted-ips on the serve command.
func addProxyProtocolFlag(cmd *kingpin.CmdClause) *proxyTrust {
	t := &proxyTrust{}
	cmd.Flag(proxyProtocolFlag, "Address or CIDR (repeatable, or comma-separated) allowed to send a PROXY protocol header (v1 or v2): "+
		"the header's client address becomes the push's source address. Set it to the load balancer or Traefik that sends it. "+
		"Headers from other addresses are ignored; connections without one are served as usual. Empty: headers are not read.").
		PlaceHolder("CIDR").SetValue(t)
	return t
}

// Set parses one flag value: addresses or CIDRs, comma-separated.
func (t *proxyTrust) Set(value string) error {
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		p, err := parseTrusted(s)
		if err != nil {
			return fmt.Errorf("--%s: %q is neither an IP address nor a CIDR such as 10.42.0.0/16", proxyProtocolFlag, excerpt(s))
		}
		t.prefixes = append(t.prefixes, p)
	}
	return nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zone not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// excerpt bounds what an error message quotes of a flag value.
func excerpt(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (t *proxyTrust) String() string {
	s := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// IsCumulative makes the flag repeatable.
func (t *proxyTrust) IsCumulative() bool { return true }

// trustsEveryone says whether the list holds 0.0.0.0/0 or ::/0: any client may then choose the
// address the relay records.
func (t *proxyTrust) trustsEveryone() bool {
	for _, p := range t.prefixes {
		if p.Bits() == 0 {
			return true
		}
	}
	return false
}

// wrapAll returns the listeners reading PROXY headers from the trusted addresses; with none, the
// listeners as they are.
func (t *proxyTrust) wrapAll(ls []net.Listener, logger *slog.Logger) []net.Listener {
	if len(t.prefixes) == 0 {
		return ls
	}
	if t.trustsEveryone() {
		logger.Warn("PROXY protocol headers are trusted from every address: any client can choose the source address the relay records", "trusted", t.String())
	} else {
		logger.Info("PROXY protocol headers trusted", "from", t.String())
	}
	ranges := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		ranges[i] = p.String()
	}
	// Set validated every entry, so the ranges parse.
	policy := proxyproto.MustPolicyFromRanges(ranges, proxyproto.USE, proxyproto.IGNORE)
	out := make([]net.Listener, len(ls))
	for i, l := range ls {
		out[i] = &proxyproto.Listener{
			Listener:          l,
			ConnPolicy:        policy,
			ValidateHeader:    tcpOnly,
			ReadHeaderTimeout: proxyHeaderTimeout,
		}
	}
	return out
}

// tcpOnly accepts the headers a TCP proxy sends: a TCP client address (IPv4 or IPv6), or LOCAL
// (the proxy's own health checks). A Unix or UDP address is no client of an HTTP server.
func tcpOnly(h *proxyproto.Header) error {
	if h.Command.IsLocal() || h.TransportProtocol == proxyproto.TCPv4 || h.TransportProtocol == proxyproto.TCPv6 {
		return nil
	}
	return errors.New("PROXY header with a non-TCP address")
}
