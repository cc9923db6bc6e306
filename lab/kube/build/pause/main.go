// Command pause is the lab's pod sandbox process: it holds the pod's namespaces, reaps orphaned children and exits
// on SIGINT or SIGTERM, like Kubernetes' own pause (build/pause/linux/pause.c). lab/kube_build.py builds it into the
// pause image with buildah, since no registry is reachable from the lab.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
