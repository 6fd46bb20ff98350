package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/coreos/go-systemd/v22/activation"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/opview/opview/exporter/api"
	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/gcfloor"
	"github.com/opview/opview/exporter/persist"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/store"
)

func serveCommand(app *kingpin.Application) command {
	cmd := app.Command("serve", "Accept pushes and expose them on /metrics (the default command).").Default()
	webCfg := kingpinflag.AddFlags(cmd, ":9091")
	ttl := durationFlag(cmd, "group.ttl", "A group that has not pushed for this long leaves /metrics, so its series go stale in Prometheus. 0 keeps groups forever (Pushgateway's behaviour).",
		relay.DefaultGroupTTL)
	forget := durationFlag(cmd, "group.forget-after", "How long an expired group's health series (push_time_seconds, opview_relay_group_fresh=0, ...) stay after it expired.",
		relay.DefaultForgetAfter)
	maxBody, maxBodyGiven := autoBytesFlag(cmd, "push.max-body-bytes", fmt.Sprintf("Largest push body accepted, before and after gzip decompression (e.g. 4MiB). Default: 1/64 of the Go memory limit when GOMEMLIMIT is set (4MiB in the bundle), between 1MiB and %s; else %s.",
		units.Base2Bytes(relay.DefaultMaxBodyBytes), units.Base2Bytes(relay.DefaultMaxBodyBytes)))
	maxSeries := cmd.Flag("group.max-series", "Most series one group may hold (histogram buckets count). 0: no limit.").
		Default(fmt.Sprint(relay.DefaultMaxSeries)).Int()
	maxGroups := cmd.Flag("store.max-groups", "Most groups the relay holds; an expired group makes room for a new one. 0: no limit.").
		Default(fmt.Sprint(relay.DefaultMaxGroups)).Int()
	maxBytes, maxBytesGiven := autoBytesFlag(cmd, "store.max-bytes", fmt.Sprintf("The store's byte budget: the memory all groups' samples may take; a push that would pass it is refused (413). Default: %.0f%% of the Go memory limit when GOMEMLIMIT is set (the bundle sets it from the container's memory limit), else %s. 0: no budget.",
		relay.BudgetShare*100, units.Base2Bytes(relay.DefaultMaxBytes)))
	labelLimit := cmd.Flag("push.label-limit", "Most labels one pushed series may have, its name and grouping labels included (Prometheus's label_limit). 0: no limit.").
		Default(fmt.Sprint(relay.DefaultLabelLimit)).Int()
	labelNameLen := cmd.Flag("push.label-name-length-limit", "Longest label name, in bytes (Prometheus's label_name_length_limit). 0: no limit.").
		Default(fmt.Sprint(relay.DefaultLabelNameLengthLimit)).Int()
	labelValueLen := cmd.Flag("push.label-value-length-limit", "Longest label value and metric name, in bytes, grouping labels in the URL included (Prometheus's label_value_length_limit). 0: no limit.").
		Default(fmt.Sprint(relay.DefaultLabelValueLengthLimit)).Int()
	helpLen := cmd.Flag("push.help-length-limit", "Longest HELP text of a pushed family, in bytes. 0: no limit.").
		Default(fmt.Sprint(relay.DefaultHelpLengthLimit)).Int()
	srcs := addSourceFlags(cmd)
	persistenceFile := cmd.Flag("persistence.file", "File that keeps the groups (and the sources added through the API) across restarts; its directory must exist. One relay at a time owns it, through FILE.lock: a second one waits up to "+relay.LockWait.String()+" for the first to stop. Empty: keep nothing.").PlaceHolder("FILE").String()
	persistenceInterval := durationFlag(cmd, "persistence.interval", "How often the persistence file is written (also on shutdown). 0: only on shutdown.",
		relay.DefaultPersistenceInterval)
	writeTokenFile := cmd.Flag("web.write-token-file", "File with the token(s), one per line, that pushes, deletes and the sources API need (Authorization: Bearer <token>, or basic auth with the token as password). Reads stay open. Empty: writes are open to anyone who reaches the relay, and the sources API is off.").PlaceHolder("FILE").String()
	proxyTrust := addProxyProtocolFlag(cmd)

	return command{clause: cmd, action: func(ctx context.Context, logger *slog.Logger) int {
		for _, c := range []struct {
			bad bool
			msg string
		}{
			{*ttl < 0, "--group.ttl must not be negative"},
			{*forget < 0, "--group.forget-after must not be negative"},
			{maxBodyGiven() && *maxBody <= 0, "--push.max-body-bytes must be positive"},
			{*maxSeries < 0, "--group.max-series must not be negative"},
			{*maxGroups < 0, "--store.max-groups must not be negative"},
			{*maxBytes < 0, "--store.max-bytes must not be negative"},
			{*labelLimit < 0, "--push.label-limit must not be negative"},
			{*labelNameLen < 0, "--push.label-name-length-limit must not be negative"},
			{*labelValueLen < 0, "--push.label-value-length-limit must not be negative"},
			{*helpLen < 0, "--push.help-length-limit must not be negative"},
			{*persistenceInterval < 0, "--persistence.interval must not be negative"},
		} {
			if c.bad {
				return usageError(logger, c.msg)
			}
		}
		memLimit := debug.SetMemoryLimit(-1)
		limits := relay.DefaultLimits(memLimit)
		if !maxBodyGiven() {
			*maxBody = relay.DefaultMaxBody(memLimit)
		}
		limits.MaxGroups, limits.MaxSeriesPerGroup = *maxGroups, *maxSeries
		limits.LabelLimit, limits.LabelNameLengthLimit, limits.LabelValueLengthLimit = *labelLimit, *labelNameLen, *labelValueLen
		limits.HelpLengthLimit = *helpLen
		if maxBytesGiven() {
			limits.MaxBytes = *maxBytes
		}
		cfg := relay.Config{
			GroupTTL: *ttl, ForgetAfter: *forget, MaxBodyBytes: *maxBody,
			Limits: limits, Logger: logger,
			PersistenceFile: *persistenceFile, PersistenceInterval: *persistenceInterval,
		}
		if err := srcs.apply(&cfg); err != nil {
			return usageError(logger, err.Error())
		}
		if *writeTokenFile != "" {
			t, err := auth.LoadTokenFile(*writeTokenFile)
			if err != nil {
				return usageError(logger, "--web.write-token-file: "+err.Error())
			}
			cfg.WriteTokens = t
		}
		cfg.Settings = settings(cmd, limits, *maxBody)
		r, err := relay.Open(ctx, cfg)
		switch {
		case err != nil && ctx.Err() != nil:
			logger.Info("stopped before serving, while waiting for the persistence file's lock")
			return 0
		case errors.Is(err, persist.ErrLocked):
			logger.Error("--persistence.file: " + err.Error())
			return 1
		case err != nil:
			return usageError(logger, "--persistence.file: "+err.Error())
		}
		return serve(ctx, r, webCfg, cfg.WriteTokens != nil, proxyTrust, logger)
	}}
}

// settings lists the serve flags as the relay runs with them, for the status page: every flag
// given or defaulted, the byte budget as it resolved.
func settings(cmd *kingpin.CmdClause, limits store.Limits, maxBody int64) []api.Setting {
	var out []api.Setting
	for _, f := range cmd.Model().Flags {
		v := f.Value.String()
		switch {
		case f.Name == "store.max-bytes":
			v = units.Base2Bytes(limits.MaxBytes).String()
		case f.Name == "push.max-body-bytes":
			v = units.Base2Bytes(maxBody).String()
		case v == "" || v == "[]":
			continue
		}
		out = append(out, api.Setting{Name: "--" + f.Name, Value: v})
	}
	return out
}

// serverLimits bound what one client can make the relay's HTTP server hold: a client slower
// than the timeouts is cut off, so that it can neither keep a connection nor an old exposition in
// memory; a request's header may not pass maxHeaderBytes (push URLs included).
type serverLimits struct {
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxHeaderBytes                                            int
}

// httpLimits are the relay's; tests shorten the timeouts.
var httpLimits = serverLimits{
	readHeaderTimeout: 10 * time.Second,
	readTimeout:       time.Minute,
	writeTimeout:      time.Minute,
	idleTimeout:       2 * time.Minute,
	maxHeaderBytes:    64 << 10,
}

func serve(ctx context.Context, r *relay.Relay, webCfg *web.FlagConfig, tokens bool, proxyTrust *proxyTrust, logger *slog.Logger) int {
	if os.Getenv("GOGC") == "" {
		defer gcfloor.Start(relay.GOGC, relay.HeapFloor)()
	}
	if *webCfg.WebConfigFile != "" {
		if err := web.Validate(*webCfg.WebConfigFile); err != nil {
			return usageError(logger, "--web.config.file: "+err.Error())
		}
	}
	listeners, err := listen(webCfg)
	if err != nil {
		logger.Error("listening", "err", err)
		return 1
	}
	listeners = proxyTrust.wrapAll(listeners, logger)
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = l.Addr().String()
		if !tokens && !isLoopback(l.Addr()) {
			logger.Warn("writes are open: anyone who reaches this address can push, overwrite and delete groups; give --web.write-token-file (the homelab bundle does)", "listen", addrs[i])
		}
	}
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: httpLimits.readHeaderTimeout,
		ReadTimeout:       httpLimits.readTimeout,
		WriteTimeout:      httpLimits.writeTimeout,
		IdleTimeout:       httpLimits.idleTimeout,
		MaxHeaderBytes:    httpLimits.maxHeaderBytes,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := r.Start(ctx) // before serving: the sources API answers after a first scrape
	go wait()

	errc := make(chan error, 1)
	go func() { errc <- web.ServeMultiple(listeners, srv, webCfg, logger) }()
	logger.Info("opview-relay started", "version", relay.Version(), "listen", strings.Join(addrs, ","))
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serving", "err", err)
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("graceful shutdown", "err", err)
		return 1
	}
	if err := r.Close(); err != nil {
		logger.Error("saving the persistence file on shutdown", "err", err)
		return 1
	}
	return 0
}

// listen opens the listeners before anything says the relay started, so that a port already
// in use is the first and only thing reported.
func listen(webCfg *web.FlagConfig) ([]net.Listener, error) {
	if webCfg.WebSystemdSocket != nil && *webCfg.WebSystemdSocket {
		ls, err := activation.Listeners()
		if err != nil {
			return nil, fmt.Errorf("--web.systemd-socket: %w", err)
		}
		if len(ls) == 0 {
			return nil, errors.New("--web.systemd-socket: no socket activation file descriptors found")
		}
		return ls, nil
	}
	var ls []net.Listener
	for _, addr := range *webCfg.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, fmt.Errorf("--web.listen-address=%s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
