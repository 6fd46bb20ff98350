// Command generate writes opview's Grafana dashboards as JSON files into a folder:
//
//	go run ./dashboards/cmd/generate -out dashboards
//
// `make dashboards` runs it; `make check-generated` fails when the committed files differ.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opview/opview/dashboards"
)

func main() {
	out := flag.String("out", "dashboards", "folder to write the dashboards' JSON files into")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
		return fmt.Errorf("-out %q: not a folder", out)
	}
	ds, err := dashboards.All()
	if err != nil {
		return err
	}
	for _, d := range ds {
		path := filepath.Join(out, d.File)
		if err := os.WriteFile(path, d.JSON, 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	return nil
}
