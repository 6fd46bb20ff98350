//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The namespaces have no route to the Go module proxy, so TestMain prepares what needs it before
// entering them: the repository's binaries are built and the modules that hold the CRDs are
// downloaded. The child finds them through these variables; a failed step is recorded as
// <name>.err, reported by the test that needs it.
const envArtifacts = "OPVIEW_E2E_ARTIFACTS"

// goBuilds are the binaries built from this tree: name -> module folder and package.
var goBuilds = map[string][2]string{
	"opview-relay":    {".", "./exporter/cmd/opview-relay"},
	"sample-operator": {"examples", "./sampleoperator/cmd/sample-operator"},
}

// prepare builds and downloads into dir (outside the namespaces, which have no network).
func prepare(dir string) error {
	v, err := LoadVersions()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	record := func(name string, err error) error {
		if err == nil {
			return nil
		}
		return os.WriteFile(filepath.Join(dir, name+".err"), []byte(err.Error()), 0o644)
	}
	for name, b := range goBuilds {
		start := time.Now()
		cmd := execCommandIn(ctx, filepath.Join(RepoRoot(), b[0]), "go", "build", "-o", filepath.Join(dir, name), b[1])
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build %s (in %s): %v\n%s", b[1], b[0], err, out)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", name, time.Since(start).Round(time.Second))
		}
		if err := record(name, err); err != nil {
			return err
		}
	}
	mods := map[string]string{
		"traefik-module":         "github.com/traefik/traefik/v3@" + v.Traefik,
		"helm-controller-module": "github.com/k3s-io/helm-controller@" + v.HelmController,
	}
	for name, mod := range mods {
		d, err := moduleDir(ctx, mod)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), []byte(d), 0o644)
		}
		if err := record(name, err); err != nil {
			return err
		}
	}
	return nil
}

// moduleDir is the folder of module@version in the module cache (downloaded if needed).
func moduleDir(ctx context.Context, modVersion string) (string, error) {
	out, err := execOutput(ctx, "go", "mod", "download", "-json", modVersion)
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s", modVersion, err, info.Error)
	}
	return info.Dir, nil
}

// Artifact returns the path (binaries) or content (module folders) that TestMain prepared.
func Artifact(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv(envArtifacts)
	if dir == "" {
		t.Fatal("e2e: no prepared artifacts (run through TestMain as root)")
	}
	if b, err := os.ReadFile(filepath.Join(dir, name+".err")); err == nil {
		t.Fatalf("preparing %s failed: %s", name, b)
	}
	p := filepath.Join(dir, name)
	if strings.HasSuffix(name, "-module") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}
