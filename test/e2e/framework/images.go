//go:build e2e

package framework

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ImageSpec describes a single-layer image made from binaries built here, on no base image (the
// binaries are static): what the registries this machine can't reach would have served.
type ImageSpec struct {
	Ref        string // name:tag, exactly as the pods refer to it
	Files      []ImageFile
	Dirs       []ImageDir
	Entrypoint []string
	Cmd        []string
	User       string // uid:gid
	WorkingDir string
	Env        []string
	Ports      []string // e.g. 9090/tcp
	Volumes    []string
}

// ImageFile is a file of the image: Source's content (a path on this machine) or Content.
type ImageFile struct {
	Path     string // absolute, in the image
	Mode     int64
	Source   string
	Content  string
	UID, GID int
}

// ImageDir is a folder of the image.
type ImageDir struct {
	Path     string
	Mode     int64
	UID, GID int
}

// Passwd returns /etc/passwd and /etc/group files naming root and the given users (name -> id,
// the group of the same id and name).
func Passwd(users map[string]int) []ImageFile {
	passwd, group := "root:x:0:0:root:/root:/sbin/nologin\n", "root:x:0:\n"
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		passwd += fmt.Sprintf("%s:x:%d:%d:%s:/nonexistent:/sbin/nologin\n", n, users[n], users[n], n)
		group += fmt.Sprintf("%s:x:%d:\n", n, users[n])
	}
	return []ImageFile{{Path: "/etc/passwd", Mode: 0o644, Content: passwd}, {Path: "/etc/group", Mode: 0o644, Content: group}}
}

// BuildImage writes the image as a docker save tarball (what `ctr images import` reads) to out.
func BuildImage(spec ImageSpec, out string) (Image, error) {
	tag, err := name.NewTag(spec.Ref, name.StrictValidation)
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", spec.Ref, err)
	}
	layerTar, err := spec.layer()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return Image{}, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Config = v1.Config{Entrypoint: spec.Entrypoint, Cmd: spec.Cmd, User: spec.User, WorkingDir: spec.WorkingDir, Env: spec.Env}
	if len(spec.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.Ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(spec.Volumes) > 0 {
		cf.Config.Volumes = map[string]struct{}{}
		for _, v := range spec.Volumes {
			cf.Config.Volumes[v] = struct{}{}
		}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Image{}, err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return Image{}, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	return Image{Ref: spec.Ref, Tar: out}, nil
}

// layer is the image's only layer: folders (parents first), then files.
func (s ImageSpec) layer() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	written := map[string]bool{}
	dir := func(d ImageDir) error {
		p := strings.TrimPrefix(path.Clean(d.Path), "/") + "/"
		if written[p] {
			return nil
		}
		written[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: d.Mode, Uid: d.UID, Gid: d.GID, ModTime: mtime, Format: tar.FormatPAX})
	}
	parents := func(p string) error {
		var chain []string
		for d := path.Dir(path.Clean(p)); d != "/" && d != "."; d = path.Dir(d) {
			chain = append([]string{d}, chain...)
		}
		for _, d := range chain {
			if err := dir(ImageDir{Path: d, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range s.Dirs {
		if err := parents(d.Path); err != nil {
			return nil, err
		}
		if err := dir(d); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		if err := parents(f.Path); err != nil {
			return nil, err
		}
		body := []byte(f.Content)
		if f.Source != "" {
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, err
			}
			body = b
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode,
			Uid: f.UID, Gid: f.GID, Size: int64(len(body)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func goarch() string { return runtime.GOARCH }

// PauseRef is the sandbox image: containerd's sandbox_image.
const PauseRef = "localhost/opview-e2e/pause:1.0"

// PauseImage packs the test's pause program (test/e2e/pause) as the pods' sandbox image, running
// as 65535 like registry.k8s.io/pause.
func PauseImage(bin, out string) (Image, error) {
	return BuildImage(ImageSpec{
		Ref:        PauseRef,
		Files:      []ImageFile{{Path: "/pause", Mode: 0o755, Source: bin}},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
	}, out)
}

// PrometheusImage lays out Prometheus as prom/prometheus does (its Dockerfile): /bin/prometheus and
// /bin/promtool, a default /etc/prometheus/prometheus.yml, /prometheus owned by nobody as the
// working folder and volume, user nobody, the same entrypoint and default arguments; there is no
// busybox base (nothing in the bundle runs a shell in it).
func PrometheusImage(ref, prometheus, promtool, out string) (Image, error) {
	const nobody = 65534
	files := append(Passwd(map[string]int{"nobody": nobody}),
		ImageFile{Path: "/bin/prometheus", Mode: 0o755, Source: prometheus},
		ImageFile{Path: "/bin/promtool", Mode: 0o755, Source: promtool},
		ImageFile{Path: "/etc/prometheus/prometheus.yml", Mode: 0o644, UID: nobody, GID: nobody,
			Content: "global: {scrape_interval: 15s}\nscrape_configs: [{job_name: prometheus, static_configs: [{targets: [\"localhost:9090\"]}]}]\n"})
	return BuildImage(ImageSpec{
		Ref:   ref,
		Files: files,
		Dirs: []ImageDir{{Path: "/tmp", Mode: 0o1777}, {Path: "/etc/prometheus", Mode: 0o755, UID: nobody, GID: nobody},
			{Path: "/prometheus", Mode: 0o775, UID: nobody, GID: nobody}},
		Entrypoint: []string{"/bin/prometheus"},
		Cmd:        []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"},
		User:       "nobody",
		WorkingDir: "/prometheus",
		Ports:      []string{"9090/tcp"},
		Volumes:    []string{"/prometheus"},
	}, out)
}

// TraefikImage lays out Traefik as the official image does (/usr/local/bin/traefik, port 80) but
// runs the binary directly: the official entrypoint script only puts "traefik" before arguments
// that start with "-", which is what the chart passes.
func TraefikImage(ref, traefik, out string) (Image, error) {
	return BuildImage(ImageSpec{
		Ref:        ref,
		Files:      append(Passwd(map[string]int{"nonroot": 65532}), ImageFile{Path: "/usr/local/bin/traefik", Mode: 0o755, Source: traefik}),
		Dirs:       []ImageDir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint: []string{"/usr/local/bin/traefik"},
		Ports:      []string{"80/tcp"},
	}, out)
}

// OperatorImage packs a controller-runtime operator as a kubebuilder scaffold's Dockerfile does
// (distroless static, /manager, user 65532).
func OperatorImage(ref, manager, out string) (Image, error) {
	return BuildImage(ImageSpec{
		Ref:        ref,
		Files:      append(Passwd(map[string]int{"nonroot": 65532}), ImageFile{Path: "/manager", Mode: 0o755, Source: manager}),
		Dirs:       []ImageDir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint: []string{"/manager"},
		User:       "65532:65532",
		WorkingDir: "/",
	}, out)
}
