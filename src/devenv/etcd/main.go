// etcd for the development environment, built from the Go module proxy by
// scripts/build-tools.sh: the server module's own entry point, nothing added.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
