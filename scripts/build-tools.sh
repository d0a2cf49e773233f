#!/usr/bin/env bash
# Builds the Go components vuln-patcher's real-component environment needs
# (kube-apiserver, kube-controller-manager, kubectl, BuildKit, copa, helm; for a real
# node kubelet, kube-scheduler and containerd; etcd and nats-server, as production runs
# them) from the
# Go module proxy, each from a small generated wrapper module, and caches the
# binaries by version outside the repository. A second run with the binaries in
# place does nothing. Usage: scripts/build-tools.sh [kube|etcd|nats|buildkit|copa|helm|cosign|node ...]
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.36.3}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-0.28.1}
COPA_VERSION=${COPA_VERSION:-0.14.2}
HELM_VERSION=${HELM_VERSION:-4.3.1}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-2.3.7}
COREDNS_VERSION=${COREDNS_VERSION:-1.15.0}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
NATS_VERSION=${NATS_VERSION:-2.15.2}
COSIGN_VERSION=${COSIGN_VERSION:-3.1.3}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VULN_PATCHER_CACHE:-$HOME/.cache/vuln-patcher}
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/build"
export CGO_ENABLED=0 GOFLAGS=${GOFLAGS:--mod=mod} GOTOOLCHAIN=${GOTOOLCHAIN:-local}

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# have NAME VERSION... -> true when every named binary of that version is cached.
have() { local v=$1; shift; for n in "$@"; do [ -x "$BIN/$n-$v" ] || return 1; done; }

# wrapper DIR MODULE -> a fresh module in DIR that will require MODULE.
wrapper() {
  rm -rf "$1"; mkdir -p "$1"; cd "$1"
  go mod init "vulnpatcher.invalid/$(basename "$1")" >/dev/null 2>&1
}

# install OUTDIR VERSION NAME... -> move the built binaries into the cache, versioned.
install_bins() {
  local out=$1 v=$2; shift 2
  for n in "$@"; do mv -f "$out/$n" "$BIN/$n-$v.tmp"; mv -f "$BIN/$n-$v.tmp" "$BIN/$n-$v"; ln -sfn "$n-$v" "$BIN/$n"; done
}

# kube_module DIR: the wrapper module for k8s.io/kubernetes in DIR (cwd afterwards).
kube_module() {
  local v=$KUBE_VERSION minor=${KUBE_VERSION#1.}
  log "kube $v: preparing the wrapper module"
  local dir="$CACHE/build/kube-$v"; wrapper "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { echo "cannot read go.mod of k8s.io/kubernetes@v$v" >&2; return 1; }
  # Every staging module k/k replaces with ./staging/... is published as v0.<minor>.
  local n=0
  for m in $(sed -n 's|^[[:space:]]*k8s.io/\([a-z0-9-]*\) => \./staging/src/k8s.io/.*|\1|p' "$gomod"); do
    go mod edit -replace="k8s.io/$m=k8s.io/$m@v0.$minor"; n=$((n + 1))
  done
  [ "$n" -gt 20 ] || { echo "expected the staging replace list in $gomod, found $n entries" >&2; return 1; }
  local gd; gd=$(sed -n 's/^godebug \(.*\)$/\1/p' "$gomod" | head -n1)
  [ -n "$gd" ] && go mod edit -godebug="$gd"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  go mod edit -require="k8s.io/kubernetes@v$v"
  go mod tidy >/dev/null
}

# kube_ldflags -> the -ldflags that stamp KUBE_VERSION into Kubernetes binaries.
kube_ldflags() {
  local v=$KUBE_VERSION minor=${KUBE_VERSION#1.} ldf="-s -w" k
  for k in "gitVersion=v$v" "gitMajor=1" "gitMinor=${minor%%.*}" "gitTreeState=clean" "gitCommit=0000000000000000000000000000000000000000" "buildDate=1970-01-01T00:00:00Z"; do
    ldf="$ldf -X k8s.io/component-base/version.$k -X k8s.io/client-go/pkg/version.$k"
  done
  printf '%s' "$ldf"
}

build_kube() {
  local v=$KUBE_VERSION
  have "v$v" kube-apiserver kube-controller-manager kubectl && return 0
  kube_module
  local ldf; ldf=$(kube_ldflags)
  log "kube $v: building kube-apiserver, kube-controller-manager, kubectl (cold: ~15 min on 2 cores)"
  # One go build for all binaries, so the shared packages compile once.
  go build -trimpath -tags selinux,notest -ldflags "$ldf" -o out/ \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  install_bins out "v$v" kube-apiserver kube-controller-manager kubectl
}

# node: the kubelet and kube-scheduler from the same wrapper module as the apiserver
# (so from the same Kubernetes version), containerd 2.x and its runc shim, and the
# environment's pause program (src/devenv/pause, a file of this repository).
build_node() {
  local v=$KUBE_VERSION cv=$CONTAINERD_VERSION dv=$COREDNS_VERSION
  if ! have "v$v" kubelet kube-scheduler kube-proxy; then
    local dir="$CACHE/build/kube-$v"
    if [ -f "$dir/go.mod" ] && grep -q kubelet "$dir/tools.go" 2>/dev/null; then cd "$dir"; else kube_module; fi
    local ldf; ldf=$(kube_ldflags)
    log "node: building kubelet, kube-scheduler and kube-proxy $v (warm: ~2 min; cold: ~6 min)"
    go build -trimpath -tags selinux,notest -ldflags "$ldf" -o out/ \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
    install_bins out "v$v" kubelet kube-scheduler kube-proxy
  fi
  if ! have "v$cv" containerd containerd-shim-runc-v2; then
    log "node: building containerd $cv (~2 min)"
    local out="$CACHE/build/containerd-$cv"; rm -rf "$out"; mkdir -p "$out"
    GOBIN="$out" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w" \
      "github.com/containerd/containerd/v2/cmd/containerd@v$cv" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$cv"
    install_bins "$out" "v$cv" containerd containerd-shim-runc-v2
  fi
  if ! have "v$dv" coredns; then
    # The cluster's DNS (Services by name, as the chart's addresses need), run on the node.
    log "node: building CoreDNS $dv"
    local dir="$CACHE/build/coredns-$dv"; wrapper "$dir"
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/coredns/coredns"
GO
    go mod edit -require="github.com/coredns/coredns@v$dv"
    go mod tidy >/dev/null
    go build -trimpath -ldflags "-s -w" -o out/coredns github.com/coredns/coredns
    install_bins out "v$dv" coredns
  fi
  local src="$REPO/src/devenv/pause/main.go"
  local sum; sum=$(sha256sum "$src" | cut -c1-12)
  if [ ! -x "$BIN/pause-$sum" ]; then
    log "node: building the pause program"
    local out="$CACHE/build/pause"; mkdir -p "$out"
    (cd "$out" && go build -trimpath -ldflags "-s -w" -o pause "$src")
    install_bins "$out" "$sum" pause
  fi
}

# etcd: the server module's etcdmain, behind a main of ours (src/devenv/etcd/main.go),
# the version stamped as etcd's own release builds do.
build_etcd() {
  local v=$ETCD_VERSION
  have "v$v" etcd && return 0
  log "etcd $v: building"
  local dir="$CACHE/build/etcd-$v"; wrapper "$dir"
  cp "$REPO/src/devenv/etcd/main.go" main.go
  go mod edit -require="go.etcd.io/etcd/server/v3@v$v"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$v" -o out/etcd .
  install_bins out "v$v" etcd
}

# nats-server: its module's root package is the server's main.
build_nats() {
  local v=$NATS_VERSION
  have "v$v" nats-server && return 0
  log "nats-server $v: building"
  local dir="$CACHE/build/nats-$v"; wrapper "$dir"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/nats-io/nats-server/v2"
GO
  go mod edit -require="github.com/nats-io/nats-server/v2@v$v"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o out/nats-server github.com/nats-io/nats-server/v2
  install_bins out "v$v" nats-server
}

build_buildkit() {
  local v=$BUILDKIT_VERSION
  have "v$v" buildkitd buildctl && return 0
  log "buildkit $v: building"
  local dir="$CACHE/build/buildkit-$v"; wrapper "$dir"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
GO
  go mod edit -require="github.com/moby/buildkit@v$v"
  go mod tidy >/dev/null
  go build -trimpath -tags "osusergo netgo static_build seccomp" \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=v$v" -o out/ \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  install_bins out "v$v" buildkitd buildctl
}

build_copa() {
  local v=$COPA_VERSION
  have "v$v" copa && return 0
  log "copa $v: building"
  # go install ...@v0.14.2 is refused here (the proxy denies the version list it
  # reads for the deprecation check), so build from a wrapper module instead.
  local dir="$CACHE/build/copa-$v"; wrapper "$dir"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/project-copacetic/copacetic"
GO
  go mod edit -require="github.com/project-copacetic/copacetic@v$v"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w -X main.version=$v" -o out/copa github.com/project-copacetic/copacetic
  install_bins out "v$v" copa
}

build_helm() {
  local v=$HELM_VERSION major=${HELM_VERSION%%.*}
  have "v$v" helm && return 0
  log "helm $v: building"
  local dir="$CACHE/build/helm-$v"; wrapper "$dir"
  cat > tools.go <<GO
//go:build tools

package tools

import _ "helm.sh/helm/v$major/cmd/helm"
GO
  go mod edit -require="helm.sh/helm/v$major@v$v"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o out/helm "helm.sh/helm/v$major/cmd/helm"
  install_bins out "v$v" helm
}

# cosign: signs the patched images and attests their VEX and provenance (Sigstore).
build_cosign() {
  local v=$COSIGN_VERSION
  have "v$v" cosign && return 0
  log "cosign $v: building"
  local dir="$CACHE/build/cosign-$v"; wrapper "$dir"
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/sigstore/cosign/v3/cmd/cosign"
GO
  go mod edit -require="github.com/sigstore/cosign/v3@v$v"
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=v$v" -o out/cosign \
    github.com/sigstore/cosign/v3/cmd/cosign
  install_bins out "v$v" cosign
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(kube etcd nats buildkit copa helm cosign node)
for t in "${targets[@]}"; do
  case $t in
    kube|etcd|nats|buildkit|copa|helm|cosign|node) ;;
    *) echo "unknown component: $t (kube, etcd, nats, buildkit, copa, helm, cosign, node)" >&2; exit 2 ;;
  esac
  start=$SECONDS
  # One builder per component at a time, across processes (CI and a test may both ask).
  exec {lock}>"$CACHE/build/$t.lock"; flock "$lock"
  ( "build_$t" )
  flock -u "$lock"
  log "$t ready ($((SECONDS - start)) s)"
done
