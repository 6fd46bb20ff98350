//go:build e2e

// Package e2e runs opview's user path on a real single-node cluster (framework): the bundle's pods
// run in containerd under kubelet, Traefik from its Helm chart, operators out of cluster on the
// LAN. Run it with `make e2e` (root: it creates network namespaces and runs containers).
package e2e

import (
	"os"
	"testing"

	"github.com/opview/opview/test/e2e/framework"
)

func TestMain(m *testing.M) { os.Exit(framework.Main(m, framework.Prepare)) }
