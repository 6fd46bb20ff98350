// Command pause is the sandbox process of the e2e's pods (containerd's sandbox_image), as
// registry.k8s.io/pause is elsewhere: it holds the pod's namespaces, reaps the zombies it inherits
// when it is the pod's PID 1, and exits on SIGINT or SIGTERM. It is built static (CGO_ENABLED=0)
// and packed by the e2e framework (framework.PauseImage).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
