package remotewrite

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const base = `# the base
global:
  scrape_interval: 30s # kept
storage:
  tsdb: {retention: {time: 30d}}
scrape_configs:
  - job_name: a
`

const settings = `external_labels:
  cluster: home
# where to
remote_write:
  - url: http://store:8428/api/v1/write
`

func TestMerge(t *testing.T) {
	out, err := Merge([]byte(base), []byte(settings), "# header\n")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"# header\n", "# the base\n", "scrape_interval: 30s # kept\n", "# where to\n", "  external_labels:\n    cluster: home\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("merged file lacks %q:\n%s", want, s)
		}
	}
	if strings.Index(s, "remote_write:") > strings.Index(s, "scrape_configs:") || strings.Index(s, "storage:") > strings.Index(s, "remote_write:") {
		t.Errorf("remote_write not between storage and scrape_configs:\n%s", s)
	}
	var got struct {
		Global struct {
			ScrapeInterval string            `yaml:"scrape_interval"`
			ExternalLabels map[string]string `yaml:"external_labels"`
		}
		RemoteWrite   []struct{ URL string } `yaml:"remote_write"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Global.ScrapeInterval != "30s" || got.Global.ExternalLabels["cluster"] != "home" ||
		len(got.RemoteWrite) != 1 || got.RemoteWrite[0].URL != "http://store:8428/api/v1/write" ||
		len(got.ScrapeConfigs) != 1 || got.ScrapeConfigs[0].JobName != "a" {
		t.Errorf("merged configuration %+v", got)
	}
}

func TestMergeWithoutGlobal(t *testing.T) {
	out, err := Merge([]byte("scrape_configs: []\n"), []byte(settings), "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "global:\n  external_labels:\n    cluster: home\n") {
		t.Errorf("merged:\n%s", out)
	}
}

func TestMergeRefuses(t *testing.T) {
	for name, c := range map[string]struct{ base, settings, want string }{
		"other key":         {base, settings + "scrape_configs: []\n", `"scrape_configs": only external_labels`},
		"no labels":         {base, "remote_write:\n  - url: http://x/\n", "no external_labels"},
		"no remote_write":   {base, "external_labels: {cluster: a}\n", "no remote_write"},
		"empty list":        {base, "external_labels: {cluster: a}\nremote_write: []\n", "no remote_write"},
		"labels not a map":  {base, "external_labels: [a]\nremote_write: [{url: x}]\n", "only external_labels"},
		"base writes":       {base + "remote_write: []\n", settings, "base: already sets remote_write"},
		"base labels":       {"global:\n  external_labels: {a: b}\n", settings, "already sets global.external_labels"},
		"base not a map":    {"- a\n", settings, "base: not a YAML map"},
		"settings broken":   {base, "external_labels: {\n", "settings:"},
		"global not a map":  {"global: 1\n", settings, "global is not a map"},
		"duplicate setting": {base, settings + "external_labels: {x: y}\n", "settings:"},
	} {
		_, err := Merge([]byte(c.base), []byte(c.settings), "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}
