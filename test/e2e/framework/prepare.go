//go:build e2e

package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The namespaces have no route to the Go module proxy, so Main prepares what needs it before
// entering them: the repository's binaries are built, the relay image is made by `make image`,
// and the modules that hold the Traefik chart and the HelmChart CRDs are downloaded. The child
// finds them with Artifact; a failed step is recorded as <name>.err, reported by the test that
// needs it.

// goBuilds are the binaries built from this tree, static (they go into images too): name ->
// module folder (relative to the repository) and package.
var goBuilds = map[string][2]string{
	"opview-relay":    {".", "./exporter/cmd/opview-relay"},
	"sample-operator": {"examples", "./sampleoperator/cmd/sample-operator"},
	"pause":           {"test", "./e2e/pause"},
}

// RelayImageTar is where `make image` writes the relay image (the Makefile's IMAGE_TAR).
const RelayImageTar = "dist/opview-relay-image.tar"

// Prepare builds and downloads into dir (outside the namespaces, which have no network).
func Prepare(ctx context.Context, dir string) error {
	v, err := LoadVersions()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	record := func(name string, err error) error {
		if err == nil {
			return nil
		}
		return os.WriteFile(filepath.Join(dir, name+".err"), []byte(err.Error()), 0o644)
	}
	run := func(name string, cmd *exec.Cmd) error {
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			err = fmt.Errorf("%s (in %s): %v\n%s", strings.Join(cmd.Args, " "), cmd.Dir, err, out)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: prepared %s in %s\n", name, time.Since(start).Round(100*time.Millisecond))
		}
		return record(name, err)
	}
	for name, b := range goBuilds {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), b[1])
		cmd.Dir = filepath.Join(RepoRoot(), b[0])
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := run(name, cmd); err != nil {
			return err
		}
	}
	// The relay image exactly as a user builds it.
	cmd := exec.CommandContext(ctx, "make", "image")
	cmd.Dir = RepoRoot()
	if err := run("relay-image", cmd); err != nil {
		return err
	}
	mods := map[string]string{
		"traefik-chart-module":   "github.com/traefik/traefik-helm-chart@" + v.TraefikChart,
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
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", modVersion, err, info.Error, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}

// Artifact returns the path (binaries) or content (module folders) that Main prepared.
func Artifact(t testing.TB, name string) string {
	t.Helper()
	e := Require(t)
	if b, err := os.ReadFile(filepath.Join(e.Artifacts, name+".err")); err == nil {
		Fatalf(t, "preparing %s failed: %s", name, b)
	}
	p := filepath.Join(e.Artifacts, name)
	if strings.HasSuffix(name, "-module") {
		b, err := os.ReadFile(p)
		if err != nil {
			Fatal(t, err)
		}
		return string(b)
	}
	if _, err := os.Stat(p); err != nil {
		Fatal(t, err)
	}
	return p
}

// RelayImage is the relay image `make image` wrote, with the name and tag inside it.
func RelayImage(t testing.TB, ref string) Image {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(Require(t).Artifacts, "relay-image.err")); err == nil {
		Fatalf(t, "make image failed: %s", b)
	}
	return Image{Ref: ref, Tar: filepath.Join(RepoRoot(), RelayImageTar)}
}
