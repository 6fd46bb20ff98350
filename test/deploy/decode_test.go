package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// The CRDs the bundle's custom resources must satisfy, from the Go modules that define them: the
// Traefik version the e2e runs and k3s's helm-controller.
const (
	traefikModule        = "github.com/traefik/traefik/v3@v3.6.12"
	traefikCRDFile       = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
	helmControllerModule = "github.com/k3s-io/helm-controller@v0.17.9"
	helmChartConfigCRD   = "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml"
)

// coreScheme knows the built-in kinds the bundle may use.
var coreScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decodeStrict decodes a rendered object into its Go type, refusing unknown and duplicate fields.
func decodeStrict(o object) (runtime.Object, error) {
	b, err := json.Marshal(o.raw)
	if err != nil {
		return nil, err
	}
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, coreScheme, coreScheme, kjson.SerializerOptions{Strict: true})
	obj, _, err := ser.Decode(b, nil, nil)
	return obj, err
}

// typed decodes every built-in object of a bundle; the test fails on the first that does not decode.
func typed[T runtime.Object](t *testing.T, b bundle, kind string) []T {
	t.Helper()
	var out []T
	for _, o := range b.find(kind, "") {
		obj, err := decodeStrict(o)
		if err != nil {
			t.Fatalf("%s: %s: %v", b.dir, o.id(), err)
		}
		v, ok := obj.(T)
		if !ok {
			t.Fatalf("%s: %s decoded as %T", b.dir, o.id(), obj)
		}
		out = append(out, v)
	}
	return out
}

// crd is one custom resource definition ready to validate objects, the way the API server does.
type crd struct {
	def        *apiextensionsv1.CustomResourceDefinition
	validators map[string]crdVersion // by served version
}

type crdVersion struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

var (
	crdsOnce sync.Once
	crdsByGK map[schema.GroupKind]*crd
	crdsErr  error
)

// moduleDir returns a module's folder in the module cache, downloading it once if needed.
func moduleDir(modVersion string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir() // outside any module: nothing is added to go.mod or go.sum
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %v: %s", modVersion, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no Dir in %s", modVersion, out)
	}
	return info.Dir, nil
}

// loadCRDs reads the Traefik and HelmChartConfig CRDs from their modules.
func loadCRDs(t *testing.T) map[schema.GroupKind]*crd {
	t.Helper()
	crdsOnce.Do(func() {
		crdsByGK = map[schema.GroupKind]*crd{}
		for _, src := range []struct{ module, file string }{
			{traefikModule, traefikCRDFile},
			{helmControllerModule, helmChartConfigCRD},
		} {
			dir, err := moduleDir(src.module)
			if err != nil {
				crdsErr = err
				return
			}
			path := filepath.Join(dir, filepath.FromSlash(src.file))
			b, err := os.ReadFile(path)
			if err != nil {
				crdsErr = err
				return
			}
			if err := addCRDs(crdsByGK, path, b); err != nil {
				crdsErr = err
				return
			}
		}
	})
	if crdsErr != nil {
		t.Fatal(crdsErr)
	}
	return crdsByGK
}

func addCRDs(into map[schema.GroupKind]*crd, path string, b []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		def := &apiextensionsv1.CustomResourceDefinition{}
		if err := json.Unmarshal(raw, def); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		c := &crd{def: def, validators: map[string]crdVersion{}}
		for _, v := range def.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			internal := &apiextensions.JSONSchemaProps{}
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
				return fmt.Errorf("%s: %s %s: %w", path, def.Name, v.Name, err)
			}
			s, err := structuralschema.NewStructural(internal)
			if err != nil {
				return fmt.Errorf("%s: %s %s: structural schema: %w", path, def.Name, v.Name, err)
			}
			val, _, err := validation.NewSchemaValidator(internal)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %w", path, def.Name, v.Name, err)
			}
			c.validators[v.Name] = crdVersion{structural: s, validator: val, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}
		}
		into[schema.GroupKind{Group: def.Spec.Group, Kind: def.Spec.Names.Kind}] = c
	}
}

// validateCustom validates a custom resource against its CRD: served version, scope, unknown
// fields (which the API server would prune or, with kubectl's strict validation, refuse), the
// OpenAPI schema and its CEL rules.
func validateCustom(crds map[schema.GroupKind]*crd, o object) []string {
	gv, err := schema.ParseGroupVersion(o.apiVersion())
	if err != nil {
		return []string{err.Error()}
	}
	c, ok := crds[schema.GroupKind{Group: gv.Group, Kind: o.kind()}]
	if !ok {
		return []string{fmt.Sprintf("no Kubernetes type or known CRD for %s %s", o.apiVersion(), o.kind())}
	}
	v, ok := c.validators[gv.Version]
	if !ok {
		return []string{fmt.Sprintf("%s is not a served version of %s", gv.Version, c.def.Name)}
	}
	var errs []string
	namespaced := c.def.Spec.Scope == apiextensionsv1.NamespaceScoped
	if namespaced != (o.namespace() != "") {
		errs = append(errs, fmt.Sprintf("%s is %s scoped but metadata.namespace is %q", c.def.Name, c.def.Spec.Scope, o.namespace()))
	}
	// Metadata must be real ObjectMeta.
	mb, _ := json.Marshal(o.meta())
	var meta metav1.ObjectMeta
	if err := yaml.UnmarshalStrict(mb, &meta); err != nil {
		errs = append(errs, "metadata: "+err.Error())
	}
	obj := runtime.DeepCopyJSONValue(o.raw).(map[string]any)
	unknown := pruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, u := range unknown {
		errs = append(errs, "unknown field "+u)
	}
	if res := v.validator.Validate(o.raw); res != nil {
		for _, e := range res.Errors {
			errs = append(errs, e.Error())
		}
	}
	if v.cel != nil {
		fe, _ := v.cel.Validate(context.Background(), nil, v.structural, o.raw, nil, celconfig.RuntimeCELCostBudget)
		for _, e := range fe {
			errs = append(errs, e.Error())
		}
	}
	return errs
}

// TestObjectsDecodeStrictly: built-in objects decode into their k8s.io/api types without unknown or
// duplicate fields; custom resources validate against the CRDs from Traefik's and helm-controller's
// modules. Nothing is left unchecked.
func TestObjectsDecodeStrictly(t *testing.T) {
	crds := loadCRDs(t)
	check := func(t *testing.T, where string, objs []object) {
		for _, o := range objs {
			gv, _ := schema.ParseGroupVersion(o.apiVersion())
			if coreScheme.Recognizes(gv.WithKind(o.kind())) {
				if _, err := decodeStrict(o); err != nil {
					t.Errorf("%s: %s: %v", where, o.id(), err)
				}
				continue
			}
			for _, e := range validateCustom(crds, o) {
				t.Errorf("%s: %s: %s", where, o.id(), e)
			}
		}
	}
	for _, dir := range []string{k3sDir, traefikDir, questdbDir} {
		t.Run(dir, func(t *testing.T) { check(t, dir, render(t, dir).objects) })
	}
	for _, file := range helmChartConfigFiles {
		t.Run(file, func(t *testing.T) { check(t, file, []object{readObject(t, file)}) })
	}
	t.Run(remoteWriteDir, func(t *testing.T) { b := renderRemoteWrite(t); check(t, b.dir, b.objects) })
}

// TestValidationCatchesMistakes: the checks above refuse what the API server or Traefik would
// (a misplaced key, a wrong type, the removed traefik.containo.us group), so a pass means something.
func TestValidationCatchesMistakes(t *testing.T) {
	crds := loadCRDs(t)
	tcp := render(t, traefikDir).one(t, "IngressRouteTCP", "relay")
	cases := map[string]func(m map[string]any){
		"unknown field":    func(m map[string]any) { m["spec"].(map[string]any)["entrypoints"] = []any{"relay"} },
		"wrong type":       func(m map[string]any) { m["spec"].(map[string]any)["entryPoints"] = "relay" },
		"missing required": func(m map[string]any) { delete(lookup(m, "spec", "routes", 0).(map[string]any), "match") },
		"Traefik v2 group": func(m map[string]any) { m["apiVersion"] = "traefik.containo.us/v1alpha1" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			bad := object{raw: runtime.DeepCopyJSONValue(tcp.raw).(map[string]any)}
			mutate(bad.raw)
			if errs := validateCustom(crds, bad); len(errs) == 0 {
				t.Fatalf("%s accepted", name)
			}
		})
	}
	svc := render(t, k3sDir).one(t, "Service", "relay")
	bad := object{raw: runtime.DeepCopyJSONValue(svc.raw).(map[string]any)}
	lookup(bad.raw, "spec", "ports", 0).(map[string]any)["targetport"] = "relay"
	if _, err := decodeStrict(bad); err == nil || !strings.Contains(err.Error(), "targetport") {
		t.Fatalf("strict decoding accepted an unknown Service field: %v", err)
	}
}

// readObject reads a single-object manifest of the repository (not part of a kustomization).
func readObject(t *testing.T, rel string) object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.UnmarshalStrict(b, &m); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return object{raw: m}
}
