package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/scrape"
	"github.com/opview/opview/exporter/sources"
)

// sourceFlags are the serve flags of pull sources: the operator's own (--source,
// --sources.config-file) and the limits on all of them and on those added through the API.
type sourceFlags struct {
	sources        *sourceList
	configFile     *string
	maxAPISources  *int
	minAPIInterval *time.Duration
	allowCIDRs     *[]string
	denyCIDRs      *[]string
	scrapeTimeout  *time.Duration
	bodySizeLimit  *int64
	maxConcurrent  *int
}

func addSourceFlags(cmd *kingpin.CmdClause) *sourceFlags {
	list := &sourceList{}
	cmd.Flag("source", "Pull source NAME=URL (repeatable): the relay scrapes the URL into the group {job=NAME, instance=<host:port>}. With authentication or TLS settings: --"+sources.FlagConfigFile+". Clients holding the write token can add more: PUT /api/v1/sources/<name>.").
		PlaceHolder("NAME=URL").SetValue(list)
	return &sourceFlags{
		sources: list,
		configFile: cmd.Flag(sources.FlagConfigFile, "YAML file of pull sources, read at start: sources: [{name, url, interval, timeout, and the HTTP client settings of a Prometheus scrape config: authorization, basic_auth, tls_config, oauth2, proxy_url, ...}]. Files it names are read by the relay, relative to the file's directory.").
			PlaceHolder("FILE").String(),
		maxAPISources: cmd.Flag(sources.FlagMaxAPISources, "Most pull sources clients may add through the API.").
			Default(fmt.Sprint(sources.DefaultMaxAPISources)).Int(),
		minAPIInterval: durationFlag(cmd, sources.FlagMinAPIInterval, "Shortest scrape interval of a pull source added through the API.",
			sources.DefaultMinAPIInterval),
		allowCIDRs: cmd.Flag(sources.FlagAllowCIDR, "Addresses (CIDR or IP, repeatable) that pull sources added through the API may reach although they are loopback, link-local, multicast, unspecified or the relay's own, which are refused by default.").
			PlaceHolder("CIDR").Strings(),
		denyCIDRs: cmd.Flag(sources.FlagDenyCIDR, "Addresses (CIDR or IP, repeatable) that no pull source added through the API may reach, e.g. the cluster's pod and service networks (k3s: 10.42.0.0/16, 10.43.0.0/16). Wins over --"+sources.FlagAllowCIDR+".").
			PlaceHolder("CIDR").Strings(),
		scrapeTimeout: durationFlag(cmd, sources.FlagScrapeTimeout, "Timeout of a pull source's scrape, and the longest timeout a source may ask for.",
			sources.DefaultScrapeTimeout),
		bodySizeLimit: sizeFlag(cmd, sources.FlagBodySizeLimit, "Largest answer read from a pull source; a larger one fails the scrape.",
			sources.DefaultBodySizeLimit),
		maxConcurrent: cmd.Flag(sources.FlagMaxConcurrentScrapes, "Most pull sources' answers read and parsed at once (bounds their memory to about this many times --"+sources.FlagBodySizeLimit+", several times over once parsed).").
			Default(fmt.Sprint(sources.DefaultMaxConcurrentScrapes)).Int(),
	}
}

// apply validates the flags and sets them in cfg; errors name the flag or the file.
func (f *sourceFlags) apply(cfg *relay.Config) error {
	lim := sources.Limits{
		MaxAPISources: *f.maxAPISources, MinAPIInterval: *f.minAPIInterval,
		ScrapeTimeout: *f.scrapeTimeout, BodySizeLimit: *f.bodySizeLimit, MaxConcurrentScrapes: *f.maxConcurrent,
	}
	switch {
	case lim.MaxAPISources <= 0:
		return fmt.Errorf("--%s must be positive", sources.FlagMaxAPISources)
	case lim.MinAPIInterval <= 0:
		return fmt.Errorf("--%s must be positive", sources.FlagMinAPIInterval)
	case lim.ScrapeTimeout <= 0:
		return fmt.Errorf("--%s must be positive", sources.FlagScrapeTimeout)
	case lim.BodySizeLimit <= 0:
		return fmt.Errorf("--%s must be positive", sources.FlagBodySizeLimit)
	case lim.MaxConcurrentScrapes <= 0:
		return fmt.Errorf("--%s must be positive", sources.FlagMaxConcurrentScrapes)
	}
	var err error
	if lim.AllowCIDRs, err = parseCIDRs(sources.FlagAllowCIDR, *f.allowCIDRs); err != nil {
		return err
	}
	if lim.DenyCIDRs, err = parseCIDRs(sources.FlagDenyCIDR, *f.denyCIDRs); err != nil {
		return err
	}
	cfg.SourceLimits = lim

	specs := map[string]sources.Spec{}
	if *f.configFile != "" {
		if specs, err = sources.LoadConfigFile(*f.configFile); err != nil {
			return fmt.Errorf("--%s: %w", sources.FlagConfigFile, err)
		}
	}
	// Each source is checked under the limits given, so that a bad one stops the relay at start.
	for name, spec := range specs {
		if err := sources.Check(name, spec, lim); err != nil {
			return fmt.Errorf("--%s %s: source %q: %w", sources.FlagConfigFile, *f.configFile, name, err)
		}
	}
	for _, v := range f.sources.values {
		name, spec, err := sources.ParseFlag(v)
		if err != nil {
			return err
		}
		if _, dup := specs[name]; dup {
			return fmt.Errorf("--source %s=...: the name %q is given twice (by --source or in --%s)", name, name, sources.FlagConfigFile)
		}
		if err := sources.Check(name, spec, lim); err != nil {
			return fmt.Errorf("--source %s=...: %w", name, err)
		}
		specs[name] = spec
	}
	if len(specs) > 0 {
		cfg.Sources = specs
	}
	return nil
}

// parseCIDRs parses a repeatable CIDR flag; a bare address means itself alone.
func parseCIDRs(flag string, vs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("--%s %q: want a CIDR such as 192.168.1.0/24 or an address", flag, v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// sourceList is the repeatable --source flag; it shows its URLs with their passwords redacted
// (the status page lists the flags).
type sourceList struct{ values []string }

func (l *sourceList) Set(v string) error { l.values = append(l.values, v); return nil }

func (l *sourceList) String() string {
	shown := make([]string, len(l.values))
	for i, v := range l.values {
		name, u, _ := strings.Cut(v, "=")
		shown[i] = name + "=" + scrape.RedactURL(u)
	}
	return strings.Join(shown, " ")
}

// IsCumulative makes the flag repeatable.
func (l *sourceList) IsCumulative() bool { return true }
