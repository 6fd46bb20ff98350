// Command image packs a statically linked opview-relay binary into a container image tarball in
// the `docker save` format, which `k3s ctr images import` (containerd), `docker load` and
// `podman load` all accept. It needs no Docker daemon and no registry: the image has a single
// layer (the binary, /etc/passwd and /etc/group for the non-root user, an empty /tmp) on no base.
//
//	CGO_ENABLED=0 go build -o dist/image/opview-relay ./exporter/cmd/opview-relay
//	go run ./hack/image -binary dist/image/opview-relay -image localhost/opview-relay:0.1.0 -out dist/opview-relay-image.tar
//
// `make image` runs both steps. The output is reproducible: every timestamp is SOURCE_DATE_EPOCH
// (0 when unset).
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Where the binary lives in the image, and the user it runs as (distroless's "nonroot").
const (
	binaryPath = "/usr/local/bin/opview-relay"
	userID     = 65532
	relayPort  = "9091/tcp"
)

// options is what one build needs.
type options struct {
	binary  string    // statically linked linux binary of opview-relay
	image   string    // image name and tag written into the tarball, e.g. localhost/opview-relay:0.1.0
	out     string    // tarball to write
	version string    // org.opencontainers.image.version label; the tag when empty
	created time.Time // every timestamp in the image
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "statically linked Linux opview-relay binary (CGO_ENABLED=0 go build ./exporter/cmd/opview-relay)")
	flag.StringVar(&o.image, "image", "localhost/opview-relay:dev", "image name:tag recorded in the tarball (the name k3s ctr images import gives it)")
	flag.StringVar(&o.out, "out", "dist/opview-relay-image.tar", "image tarball to write")
	flag.StringVar(&o.version, "version", "", "value of the org.opencontainers.image.version label (default: the image tag)")
	flag.Parse()
	created, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
	o.created = created
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s)\n", o.out, o.image)
}

func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", v)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// build writes the image tarball described by o.
func build(o options) error {
	if o.binary == "" {
		return errors.New("-binary: required")
	}
	tag, err := name.NewTag(o.image, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("-image %q: want name:tag: %w", o.image, err)
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return fmt.Errorf("-binary: %w", err)
	}
	arch, err := staticLinuxArch(bin)
	if err != nil {
		return fmt.Errorf("-binary %s: %w", o.binary, err)
	}
	layerTar, err := rootfs(bin, o.created)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	version := o.version
	if version == "" {
		version = tag.TagStr()
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Author = "opview"
	cf.Config = v1.Config{
		Entrypoint:   []string{binaryPath},
		User:         fmt.Sprintf("%d:%d", userID, userID),
		WorkingDir:   "/",
		Env:          []string{"PATH=/usr/local/bin"},
		ExposedPorts: map[string]struct{}{relayPort: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "opview-relay",
			"org.opencontainers.image.description": "Relay for the metrics of Kubernetes operators that run out of cluster",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: o.created})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := o.out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("-out %s: %w", o.out, err)
	}
	return os.Rename(tmp, o.out)
}

// staticLinuxArch checks that bin is a statically linked Linux ELF executable (the image has no
// libc and no dynamic loader) and returns its GOARCH.
func staticLinuxArch(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable (build it with GOOS=linux): %w", err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (it needs a loader the image does not have): build it with CGO_ENABLED=0")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "", fmt.Errorf("dynamically linked against %v: build it with CGO_ENABLED=0", libs)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return "", fmt.Errorf("ELF OS ABI %v is not Linux", f.OSABI)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	}
	return "", fmt.Errorf("unsupported ELF machine %v", f.Machine)
}

// rootfs is the image's only layer, as an uncompressed tar.
func rootfs(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(path string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path, Mode: mode, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(path string, mode int64, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(body)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", userID, userID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", userID)
	steps := []error{
		dir("etc/", 0o755),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("tmp/", 0o1777),
		dir("usr/", 0o755),
		dir("usr/local/", 0o755),
		dir("usr/local/bin/", 0o755),
		file(binaryPath[1:], 0o755, bin),
		tw.Close(),
	}
	if err := errors.Join(steps...); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}
