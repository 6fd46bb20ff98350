// Command haproxy writes deploy/haproxy/haproxy.cfg from the node list deploy/haproxy/nodes.txt
// (`make haproxy` runs it):
//
//	go run ./hack/haproxy -nodes deploy/haproxy/nodes.txt -out deploy/haproxy/haproxy.cfg
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/opview/opview/internal/haproxycfg"
)

func main() {
	nodesFile := flag.String("nodes", "deploy/haproxy/nodes.txt", "node list: one `NAME ADDRESS` per line")
	out := flag.String("out", "deploy/haproxy/haproxy.cfg", "HAProxy configuration to write")
	flag.Parse()
	if err := run(*nodesFile, *out); err != nil {
		fmt.Fprintln(os.Stderr, "haproxy:", err)
		os.Exit(1)
	}
}

func run(nodesFile, out string) error {
	f, err := os.Open(nodesFile)
	if err != nil {
		return err
	}
	defer f.Close()
	nodes, err := haproxycfg.ParseNodes(f)
	if err != nil {
		return fmt.Errorf("%s: %w", nodesFile, err)
	}
	b, err := haproxycfg.Render(haproxycfg.Bundle(nodes))
	if err != nil {
		return fmt.Errorf("%s: %w", nodesFile, err)
	}
	return os.WriteFile(out, b, 0o644)
}
