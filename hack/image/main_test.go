package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testImage = "localhost/opview-relay:0.0.0-test"

var (
	relayOnce sync.Once
	relayBin  string
	relayErr  error
)

// buildRelay compiles the real relay once for the package's tests, the way `make image` does
// (static, for this machine's architecture).
func buildRelay(t *testing.T) string {
	t.Helper()
	relayOnce.Do(func() {
		dir, err := os.MkdirTemp("", "opview-image-test")
		if err != nil {
			relayErr = err
			return
		}
		relayBin = filepath.Join(dir, "opview-relay")
		cmd := exec.Command("go", "build", "-o", relayBin, "./exporter/cmd/opview-relay")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			relayErr = fmt.Errorf("go build ./exporter/cmd/opview-relay: %v\n%s", err, b)
		}
	})
	if relayErr != nil {
		t.Fatal(relayErr)
	}
	return relayBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if relayBin != "" {
		_ = os.RemoveAll(filepath.Dir(relayBin))
	}
	os.Exit(code)
}

func TestImageLoadsBackWithRelayEntrypointAndNonRootUser(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image holds a Linux binary")
	}
	bin := buildRelay(t)
	out := filepath.Join(t.TempDir(), "image.tar")
	created := time.Unix(1700000000, 0).UTC()
	if err := build(options{binary: bin, image: testImage, out: out, created: created}); err != nil {
		t.Fatal(err)
	}

	// The docker-save manifest names the image exactly as given: containerd's importer turns
	// RepoTags into the image name the kubelet looks up (docker.io/ would be added to a bare name).
	var manifest []struct{ RepoTags []string }
	if err := json.Unmarshal(readTarEntry(t, out, "manifest.json"), &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != testImage {
		t.Fatalf("manifest.json RepoTags = %+v, want [[%s]]", manifest, testImage)
	}

	tag, err := name.NewTag(testImage)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("load %s back: %v", out, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != binaryPath {
		t.Errorf("entrypoint = %q, want [%s]", cf.Config.Entrypoint, binaryPath)
	}
	uid, gid, ok := strings.Cut(cf.Config.User, ":")
	if n, err := strconv.Atoi(uid); !ok || err != nil || n == 0 {
		t.Errorf("user = %q, want a numeric non-root uid:gid (runAsNonRoot can only verify numbers)", cf.Config.User)
	}
	if n, err := strconv.Atoi(gid); err != nil || n == 0 {
		t.Errorf("group of user %q is not a numeric non-root gid", cf.Config.User)
	}
	if _, ok := cf.Config.ExposedPorts["9091/tcp"]; !ok {
		t.Errorf("exposed ports = %v, want 9091/tcp", cf.Config.ExposedPorts)
	}
	if !cf.Created.Equal(created) {
		t.Errorf("created = %v, want %v", cf.Created.Time, created)
	}
	if got := cf.Config.Labels["org.opencontainers.image.version"]; got != "0.0.0-test" {
		t.Errorf("version label = %q, want the tag", got)
	}

	// The entrypoint is in the image, executable, byte for byte the binary given.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string]*tar.Header{}
	var inImage []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = h
		if "/"+h.Name == binaryPath {
			if inImage, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if h := files[binaryPath]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("%s missing or not executable in the layer (%v)", binaryPath, h)
	}
	if !bytes.Equal(inImage, want) {
		t.Fatalf("%s in the image differs from %s", binaryPath, bin)
	}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/tmp", "/usr/local/bin"} {
		if files[p] == nil {
			t.Errorf("%s missing from the layer", p)
		}
	}
	if h := files["/tmp"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode = %o, want 1777", h.Mode)
	}

	// What was packed is the relay and runs without anything from the image's (absent) base.
	extracted := filepath.Join(t.TempDir(), "relay")
	if err := os.WriteFile(extracted, inImage, 0o755); err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(extracted, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "opview-relay") || !strings.Contains(string(help), "serve") {
		t.Fatalf("%s --help: %v\n%s", binaryPath, err, help)
	}
}

func TestImageIsReproducible(t *testing.T) {
	bin := buildRelay(t)
	dir := t.TempDir()
	var tars [2][]byte
	for i := range tars {
		out := filepath.Join(dir, strconv.Itoa(i)+".tar")
		if err := build(options{binary: bin, image: testImage, out: out, created: time.Unix(0, 0).UTC()}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		tars[i] = b
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Fatal("two builds of the same binary differ")
	}
}

func TestRejectsWhatCannotRunInTheImage(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		o    options
		want string
	}{
		"no binary":    {options{image: testImage, out: filepath.Join(dir, "a.tar")}, "-binary: required"},
		"not ELF":      {options{binary: script, image: testImage, out: filepath.Join(dir, "b.tar")}, "not an ELF executable"},
		"bad name":     {options{binary: script, image: "Not A Name", out: filepath.Join(dir, "c.tar")}, "-image"},
		"missing file": {options{binary: filepath.Join(dir, "nope"), image: testImage, out: filepath.Join(dir, "d.tar")}, "no such file"},
	}
	// A dynamically linked executable of this machine, when there is one (cgo binaries need a
	// loader the image does not have).
	for _, p := range []string{"/bin/sh", "/usr/bin/env"} {
		if b, err := os.ReadFile(p); err == nil && bytes.HasPrefix(b, []byte("\x7fELF")) {
			cases["dynamic "+p] = struct {
				o    options
				want string
			}{options{binary: p, image: testImage, out: filepath.Join(dir, "e.tar")}, "dynamically linked"}
			break
		}
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := build(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("build = %v, want an error containing %q", err, c.want)
			}
			if _, statErr := os.Stat(c.o.out); statErr == nil {
				t.Errorf("%s written despite the error", c.o.out)
			}
		})
	}
}

func TestSourceDateEpoch(t *testing.T) {
	if got, err := sourceDateEpoch(""); err != nil || !got.Equal(time.Unix(0, 0)) {
		t.Errorf("unset: %v, %v", got, err)
	}
	if got, err := sourceDateEpoch("1700000000"); err != nil || got.Unix() != 1700000000 {
		t.Errorf("1700000000: %v, %v", got, err)
	}
	if _, err := sourceDateEpoch("yesterday"); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("yesterday: %v, want an error naming SOURCE_DATE_EPOCH", err)
	}
}

// readTarEntry returns one file of the outer (docker-save) tarball.
func readTarEntry(t *testing.T, path, entry string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no %s (%v)", path, entry, err)
		}
		if h.Name == entry {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// The Dockerfile builds the same image for Docker users: same binary path, user and port.
func TestDockerfileAgrees(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		`ENTRYPOINT ["` + binaryPath + `"]`,
		"COPY --from=build /out/opview-relay " + binaryPath + "\n",
		"USER " + strconv.Itoa(userID) + ":" + strconv.Itoa(userID) + "\n",
		"EXPOSE " + strings.TrimSuffix(relayPort, "/tcp") + "\n",
		"CGO_ENABLED=0",
		"./exporter/cmd/opview-relay",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q (hack/image builds it that way)", want)
		}
	}
}

// make image says which platform it builds for and, when that is only this machine's
// architecture, how to build for a node of another one.
func TestMakeImageSaysThePlatform(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	other := map[string]string{"amd64": "arm64"}[runtime.GOARCH]
	if other == "" {
		other = "amd64"
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{
			">> building the relay image for linux/" + runtime.GOARCH + " (this machine's architecture; for a node of another one: make image IMAGE_ARCH=" + other + ")",
			"runs on linux/" + runtime.GOARCH + " nodes only"}},
		{[]string{"IMAGE_ARCH=arm64"}, []string{">> building the relay image for linux/arm64 (as asked)", "GOARCH=arm64", "runs on linux/arm64 nodes only"}},
	} {
		cmd := exec.Command("make", append([]string{"-n", "--no-print-directory", "-C", filepath.Join("..", ".."), "image"}, c.args...)...)
		for _, kv := range os.Environ() { // only the command line chooses here
			if !strings.HasPrefix(kv, "IMAGE_ARCH=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n image %v: %v\n%s", c.args, err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("make -n image %v does not say %q:\n%s", c.args, w, out)
			}
		}
	}
}
