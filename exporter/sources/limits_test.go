package sources

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	pfx := netip.MustParsePrefix
	var own netip.Addr
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				own, _ = netip.AddrFromSlice(n.IP)
				own = own.Unmap()
				break
			}
		}
	}
	lim := Limits{AllowCIDRs: []netip.Prefix{pfx("127.0.0.0/8")}, DenyCIDRs: []netip.Prefix{pfx("10.43.0.0/16"), pfx("127.0.0.53/32")}}
	for addr, want := range map[string]string{
		"192.168.1.20":     "",
		"10.42.0.7":        "",
		"fd00::1":          "",
		"127.0.0.1":        "", // allowed
		"127.0.0.53":       "in --sources.deny-cidr 127.0.0.53/32",
		"10.43.0.1":        "in --sources.deny-cidr 10.43.0.0/16",
		"::1":              "a loopback address",
		"::ffff:127.0.0.1": "", // mapped: as 127.0.0.1
		"0.0.0.0":          "an unspecified address",
		"0.1.2.3":          "an unspecified address",
		"::":               "an unspecified address",
		"169.254.169.254":  "a link-local address",
		"fe80::1":          "a link-local address",
		"224.0.0.1":        "a multicast or broadcast address",
		"255.255.255.255":  "a multicast or broadcast address",
		"ff02::1":          "a multicast or broadcast address",
	} {
		err := lim.checkAddr(netip.MustParseAddr(addr))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", addr, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v; want %q", addr, err, want)
		}
	}
	if err := (Limits{}).checkAddr(netip.MustParseAddr("127.0.0.1")); err == nil || !strings.Contains(err.Error(), "--sources.allow-cidr can allow it") {
		t.Errorf("loopback without an allow list: %v", err)
	}
	if own.IsValid() {
		if err := (Limits{}).checkAddr(own); err == nil || !strings.Contains(err.Error(), "the relay's own addresses") {
			t.Errorf("own address %s: %v", own, err)
		}
		if err := (Limits{AllowCIDRs: []netip.Prefix{netip.PrefixFrom(own, own.BitLen())}}).checkAddr(own); err != nil {
			t.Errorf("own address %s allowed: %v", own, err)
		}
	}
}
