package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/exporter-toolkit/web"
)

// v2Header is a PROXY protocol v2 header written by hand from the specification (not by the
// library under test): signature, version 2 + PROXY, TCP over IPv4, length 12, addresses, ports.
func v2Header(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21, 0x11, 0, 12)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	b = append(b, s4[:]...)
	b = append(b, d4[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// startEcho serves a handler that answers with r.RemoteAddr, on the listeners the trusted list
// gives for a loopback listen address, as serve does.
func startEcho(t *testing.T, trusted ...string) string {
	t.Helper()
	app := kingpin.New("test", "")
	trust := addProxyProtocolFlag(app.Command("serve", ""))
	args := []string{"serve"}
	for _, s := range trusted {
		args = append(args, "--"+proxyProtocolFlag+"="+s)
	}
	if _, err := app.Parse(args); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := trust.wrapAll([]net.Listener{l}, slog.New(slog.DiscardHandler))
	noSystemd, noConfig := false, ""
	webCfg := &web.FlagConfig{WebSystemdSocket: &noSystemd, WebConfigFile: &noConfig}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }),
		ReadHeaderTimeout: 2 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- web.ServeMultiple(ls, srv, webCfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ls[0].Addr().String()
}

// request opens a connection to addr, writes prefix (a PROXY header, or nothing) and a GET,
// and returns the status code and body of the answer; code 0 when the server closes the
// connection without one.
func request(t *testing.T, addr string, prefix []byte) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(prefix, "GET / HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n"...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var (
	client = netip.MustParseAddrPort("203.0.113.7:40001") // the address a proxy claims for its client
	dest   = netip.MustParseAddrPort("192.0.2.1:9091")
)

func TestProxyHeaderFromTrustedAddressSetsRemoteAddr(t *testing.T) {
	addr := startEcho(t, "127.0.0.0/8")
	if code, body := request(t, addr, v2Header(client, dest)); code != 200 || body != client.String() {
		t.Errorf("hand-written v2 header from a trusted address: %d %q, want 200 %q", code, body, client)
	}
	// The library's own writer, v1 and v2, as HAProxy and Traefik send them.
	for _, version := range []byte{1, 2} {
		var hdr bytes.Buffer
		h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(dest))
		if _, err := h.WriteTo(&hdr); err != nil {
			t.Fatal(err)
		}
		if code, body := request(t, addr, hdr.Bytes()); code != 200 || body != client.String() {
			t.Errorf("v%d header from a trusted address: %d %q, want 200 %q", version, code, body, client)
		}
	}
	// The header stays optional for trusted addresses: Prometheus and probes send none.
	if code, body := request(t, addr, nil); code != 200 || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Errorf("no header from a trusted address: %d %q, want 200 and the connection's own address", code, body)
	}
	// LOCAL (a load balancer's health check) keeps the connection's own address.
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	var hdr bytes.Buffer
	if _, err := local.WriteTo(&hdr); err != nil {
		t.Fatal(err)
	}
	if code, body := request(t, addr, hdr.Bytes()); code != 200 || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Errorf("LOCAL header: %d %q, want 200 and the connection's own address", code, body)
	}
}

func TestProxyHeaderFromUntrustedAddressIsNotBelieved(t *testing.T) {
	addr := startEcho(t, "192.0.2.0/24", "2001:db8::/32")
	code, body := request(t, addr, v2Header(client, dest))
	if strings.Contains(body, client.Addr().String()) {
		t.Fatalf("a header from an untrusted address set the remote address: %d %q", code, body)
	}
	if code != 200 || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Errorf("header from an untrusted address: %d %q, want 200 and the connection's own address (header ignored)", code, body)
	}
}

func TestProxyHeaderWithoutTrustedAddressesIsNotRead(t *testing.T) {
	addr := startEcho(t)
	code, body := request(t, addr, v2Header(client, dest))
	if code == 200 || strings.Contains(body, client.Addr().String()) {
		t.Errorf("with no trusted address a PROXY header was accepted: %d %q", code, body)
	}
	if code, body := request(t, addr, nil); code != 200 || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Errorf("plain request: %d %q", code, body)
	}
}

func TestProxyHeaderNonTCPAddressRefused(t *testing.T) {
	addr := startEcho(t, "127.0.0.1")
	src, dst := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 1}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2}
	var hdr bytes.Buffer
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(&hdr); err != nil {
		t.Fatal(err)
	}
	if code, body := request(t, addr, hdr.Bytes()); code == 200 {
		t.Errorf("a UDP client address was accepted: %q", body)
	}
}

// TestProxyHeaderReadIsBounded: a trusted peer that starts a header and stalls does not hold the
// connection open: it is closed within the header timeout plus the server's own.
func TestProxyHeaderReadIsBounded(t *testing.T) {
	old := proxyHeaderTimeout
	proxyHeaderTimeout = 300 * time.Millisecond
	t.Cleanup(func() { proxyHeaderTimeout = old })
	addr := startEcho(t, "127.0.0.1/32")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write(v2Header(client, dest)[:14]); err != nil { // signature and half the rest
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, c) // returns when the server closes the connection
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a stalled PROXY header held the connection for %v", took)
	}
}

func TestProxyProtocolFlag(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   string // String() after parsing, or the error's excerpt
		bad    bool
	}{
		{[]string{"10.42.0.0/16"}, "10.42.0.0/16", false},
		{[]string{"10.42.1.7/16", "192.168.1.5"}, "10.42.0.0/16,192.168.1.5/32", false},
		{[]string{"192.168.1.5, 192.168.1.6", "fd00::/8"}, "192.168.1.5/32,192.168.1.6/32,fd00::/8", false},
		{[]string{"10.42.0.0/33"}, `"10.42.0.0/33" is neither an IP address nor a CIDR`, true},
		{[]string{"traefik"}, "--" + proxyProtocolFlag + `: "traefik"`, true},
		{[]string{""}, `""`, true},
		{[]string{strings.Repeat("9", 500)}, "...", true},
	} {
		app := kingpin.New("test", "")
		trust := addProxyProtocolFlag(app.Command("serve", ""))
		args := []string{"serve"}
		for _, v := range c.values {
			args = append(args, "--"+proxyProtocolFlag+"="+v)
		}
		_, err := app.Parse(args)
		switch {
		case c.bad && err == nil:
			t.Errorf("%q accepted as %s", c.values, trust)
		case c.bad && (!strings.Contains(err.Error(), c.want) || len(err.Error()) > 200):
			t.Errorf("%q: error %q, want it to contain %q, short", c.values, err, c.want)
		case !c.bad && err != nil:
			t.Errorf("%q: %v", c.values, err)
		case !c.bad && trust.String() != c.want:
			t.Errorf("%q parsed as %s, want %s", c.values, trust, c.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--" + proxyProtocolFlag + "=nope"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), proxyProtocolFlag) {
		t.Errorf("run with a bad value: exit %d, stderr %q", code, errOut.String())
	}
}

// TestServeWithProxyProtocol runs the real command with a trusted address: a push behind a PROXY
// header lands, /metrics and the probes answer without one, and the status page lists the setting.
func TestServeWithProxyProtocol(t *testing.T) {
	url, errOut := startServe(t, "--"+proxyProtocolFlag+"=127.0.0.0/8")
	addr := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := "proxied_push 1\n"
	req := "PUT /metrics/job/proxied HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write(append(v2Header(client, dest), req...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push behind a PROXY header: %s", resp.Status)
	}
	for path, want := range map[string]string{"/metrics": `proxied_push{instance="",job="proxied"} 1`, "/": proxyProtocolFlag} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("GET %s lacks %q", path, want)
		}
	}
	if !strings.Contains(errOut.String(), "PROXY protocol headers trusted") {
		t.Errorf("the log does not say which addresses are trusted:\n%s", errOut.String())
	}
}
