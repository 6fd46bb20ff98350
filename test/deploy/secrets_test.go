package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// generatedSecretFiles returns the files the secretGenerators of the kustomization in dir read,
// relative to the repository.
func generatedSecretFiles(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var out []string
	for _, g := range k.SecretGenerator {
		for _, f := range append(append([]string{}, g.EnvSources...), g.FileSources...) {
			if _, path, ok := strings.Cut(f, "="); ok {
				f = path
			}
			out = append(out, filepath.Join(dir, f))
		}
	}
	return out
}

// `make check-secrets` names every file a secretGenerator of the bundle reads that is missing, and
// `make secret`, instead of leaving the user with kustomize's raw "evalsymlink failure". It runs
// on copies of the kustomization files, so the user's own credentials are neither read nor
// touched.
func TestCheckSecretsNamesMakeSecret(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	tmp := t.TempDir()
	var dirs, want []string
	for _, dir := range []string{k3sDir, traefikDir} {
		files := generatedSecretFiles(t, dir)
		if len(files) == 0 {
			t.Fatalf("%s: no secretGenerator file; this test expects the files make secret writes", dir)
		}
		for _, f := range files {
			if _, ok := secretFixtures[f]; !ok {
				t.Errorf("%s is read by %s but has no stand-in in secretFixtures", f, dir)
			}
		}
		want = append(want, files...)
		b, err := os.ReadFile(filepath.Join(repoRoot, dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(tmp, dir, "secrets"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, dir, "kustomization.yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.Join(tmp, dir))
	}
	sort.Strings(want)
	check := func() (string, error) {
		cmd := exec.Command("make", "-s", "--no-print-directory", "-C", repoRoot, "check-secrets", "KUSTOMIZATIONS="+strings.Join(dirs, " "))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := check()
	if err == nil {
		t.Fatalf("check-secrets passed without the files:\n%s", out)
	}
	for _, f := range want {
		if !strings.Contains(out, filepath.Join(tmp, f)) {
			t.Errorf("check-secrets does not name %s:\n%s", f, out)
		}
	}
	if !strings.Contains(out, "run 'make secret'") {
		t.Errorf("check-secrets does not say to run make secret:\n%s", out)
	}

	for _, f := range want {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte(secretFixtures[f]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := check(); err != nil || !strings.Contains(out, "credential files present") {
		t.Fatalf("check-secrets with every file: %v\n%s", err, out)
	}
}
