// Wrapper module that builds kube-apiserver for make e2e. k8s.io/kubernetes can't be go install'ed
// (its go.mod replaces the k8s.io staging modules with local folders), so this module requires it
// and pins each staging module to its published v0 release. `make e2e-tools` keeps the versions in
// line with ../versions.env; nothing here is imported by the repository's modules.
module github.com/opview/opview/test/e2e/tools/kube-apiserver

go 1.25.0
