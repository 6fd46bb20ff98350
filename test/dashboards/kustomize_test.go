package dashboards_test

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestKustomization renders dashboards/kustomization.yaml with kustomize's own library and checks
// that it yields exactly one ConfigMap, opview-dashboards-<hash>, holding each generated file
// byte for byte under its file name.
func TestKustomization(t *testing.T) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../dashboards")
	if err != nil {
		t.Fatal(err)
	}
	if res.Size() != 1 {
		t.Fatalf("want one resource, got %d", res.Size())
	}
	cm := res.Resources()[0]
	if cm.GetKind() != "ConfigMap" || !strings.HasPrefix(cm.GetName(), "opview-dashboards-") {
		t.Fatalf("want ConfigMap opview-dashboards with a hash suffix, got %s %s", cm.GetKind(), cm.GetName())
	}
	data := cm.GetDataMap()
	ds := load(t)
	if len(data) != len(ds) {
		t.Errorf("ConfigMap has %d keys, want %d", len(data), len(ds))
	}
	for _, d := range ds {
		if !bytes.Equal([]byte(data[d.File]), d.JSON) {
			t.Errorf("ConfigMap key %s differs from the generated %s", d.File, d.File)
		}
	}
	if size := len(data[ds[0].File]) + len(data[ds[1].File]); size > 200<<10 {
		t.Errorf("dashboards take %d bytes: client-side kubectl apply keeps a copy in an annotation limited to 256 KiB", size)
	}
}
