//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// HelmChartConfigValues returns the valuesContent of a HelmChartConfig object.
func HelmChartConfigValues(o *unstructured.Unstructured) (string, error) {
	if o.GetKind() != "HelmChartConfig" {
		return "", fmt.Errorf("%s is not a HelmChartConfig", objName(o))
	}
	v, _, err := unstructured.NestedString(o.Object, "spec", "valuesContent")
	return v, err
}

// Traefik is a running Traefik with the kubernetescrd provider on the cluster's API server.
type Traefik struct {
	EntryPoints map[string]EntryPoint
	Proc        *Proc
}

// Addr is host:port of an entrypoint (Traefik listens on every address of the node namespace).
func (tr *Traefik) Addr(entrypoint string) string {
	return fmt.Sprintf("%s:%d", NodeIP, tr.EntryPoints[entrypoint].Port)
}

// StartTraefik starts Traefik with the entrypoints that eps render to and the same provider and
// metrics flags the chart sets, and waits for its ping.
func StartTraefik(t *testing.T, c *Cluster, eps []EntryPoint) *Traefik {
	t.Helper()
	bin := requireBinary(t, Binary("traefik", c.Versions.Traefik, "traefik"))
	tr := &Traefik{EntryPoints: map[string]EntryPoint{}}
	args := []string{
		"--log.level=INFO",
		"--accesslog=true",
		"--ping=true",
		"--ping.entrypoint=traefik",
		"--metrics.prometheus=true",
		"--metrics.prometheus.entrypoint=metrics",
		"--providers.kubernetescrd=true",
		"--providers.kubernetescrd.endpoint=" + c.URL,
		"--providers.kubernetescrd.token=" + c.Token,
		"--providers.kubernetescrd.certauthfilepath=" + c.CAFile,
		"--providers.kubernetescrd.allowEmptyServices=true",
	}
	for _, ep := range eps {
		tr.EntryPoints[ep.Name] = ep
		args = append(args, fmt.Sprintf("--entryPoints.%s.address=:%d/%s", ep.Name, ep.Port, ep.Protocol))
		if ep.TLS {
			args = append(args, fmt.Sprintf("--entryPoints.%s.http.tls=true", ep.Name))
		}
	}
	if _, ok := tr.EntryPoints["traefik"]; !ok {
		t.Fatal("traefik: no `traefik` entrypoint (ping) among the rendered ports")
	}
	tr.Proc = c.Procs.Start("traefik", bin, args...)
	WaitFor(t, "traefik /ping", time.Minute, func(ctx context.Context) error {
		code, body, err := HTTPGet(ctx, nil, "http://"+tr.Addr("traefik")+"/ping", "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("ping: %d %s", code, body)
		}
		return nil
	}, tr.Proc)
	return tr
}
