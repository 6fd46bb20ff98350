package main

import (
	"fmt"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/sources"
)

// serveExtras are the serve flags of pull sources, write authentication and persistence.
type serveExtras struct {
	sources             *[]string
	persistenceFile     *string
	persistenceInterval *time.Duration
	writeTokenFile      *string
}

func addServeExtras(cmd *kingpin.CmdClause) *serveExtras {
	return &serveExtras{
		sources: cmd.Flag("source", "Pull source NAME=URL (repeatable): the relay scrapes the URL into the group {job=NAME, instance=<host:port>}. More, with auth: PUT /api/v1/sources/<name>.").
			PlaceHolder("NAME=URL").Strings(),
		persistenceFile: cmd.Flag("persistence.file", "File that keeps the groups (and the sources added through the API) across restarts. Empty: keep nothing.").String(),
		persistenceInterval: durationFlag(cmd, "persistence.interval", "How often the persistence file is written (also on shutdown). 0: only on shutdown.",
			relay.DefaultPersistenceInterval),
		writeTokenFile: cmd.Flag("web.write-token-file", "File with the token(s), one per line, that pushes, deletes and PUT/DELETE /api/v1/sources need (Authorization: Bearer <token>, or basic auth with the token as password). Reads stay open. Empty: writes are open.").String(),
	}
}

// apply validates the flags and sets them in cfg; errors name the flag.
func (e *serveExtras) apply(cfg *relay.Config) error {
	if *e.persistenceInterval < 0 {
		return fmt.Errorf("--persistence.interval must not be negative")
	}
	for _, v := range *e.sources {
		name, spec, err := sources.ParseFlag(v)
		if err != nil {
			return err
		}
		if _, dup := cfg.Sources[name]; dup {
			return fmt.Errorf("--source %q: the name %q is given twice", v, name)
		}
		if cfg.Sources == nil {
			cfg.Sources = map[string]sources.Spec{}
		}
		cfg.Sources[name] = spec
	}
	if *e.writeTokenFile != "" {
		t, err := auth.LoadTokenFile(*e.writeTokenFile)
		if err != nil {
			return fmt.Errorf("--web.write-token-file: %w", err)
		}
		cfg.WriteTokens = t
	}
	cfg.PersistenceFile, cfg.PersistenceInterval = *e.persistenceFile, *e.persistenceInterval
	if cfg.Settings == nil {
		cfg.Settings = map[string]string{}
	}
	if cfg.PersistenceFile != "" {
		cfg.Settings["persistence.file"] = cfg.PersistenceFile
	}
	cfg.Settings["writes"] = "open"
	if cfg.WriteTokens != nil {
		cfg.Settings["writes"] = "token required"
	}
	return nil
}
