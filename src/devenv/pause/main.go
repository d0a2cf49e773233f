// The pause program of the test environment's node: PID 1 of every Pod sandbox (no
// pause image can be pulled here). It reaps orphaned children and exits on SIGTERM or
// SIGINT. Built by scripts/build-tools.sh (node) and packed into an image with umoci.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
