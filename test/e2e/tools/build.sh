#!/usr/bin/env bash
# Builds one real component for `make e2e` at the version pinned in versions.env, into
# .cache/e2e/bin/<name>-<version>/ (git-ignored).
# Usage: build.sh kubernetes|kine|traefik|prometheus
#   kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy, the
#   ones missing from the cache, in one go build (they share most packages) from the wrapper module
#   in kubernetes/.
# Pure Go builds (CGO_ENABLED=0: kine then uses modernc.org/sqlite), niced so they don't starve others.
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$tools/../../.." && pwd)
# shellcheck source=versions.env
source "$tools/versions.env"
GO=${GO:-go}
export CGO_ENABLED=0
bin=$root/.cache/e2e/bin
nice=(nice -n 10)

# gomod_of MODULE@VERSION: path of that module's go.mod in the module cache.
gomod_of() {
  "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\([^"]*\)".*/\1/p'
}

# directive_lines KEYWORD FILE: the lines of a go.mod directive (single-line or block form),
# without the keyword and without comments.
directive_lines() {
  awk -v kw="$1" '
    { sub(/\/\/.*/, "") }
    $1 == kw && $2 == "(" { blk = 1; next }
    blk && $1 == ")" { blk = 0; next }
    $1 == kw { sub("^[[:space:]]*" kw "[[:space:]]+", ""); print; next }
    blk && NF > 0 { print }
  ' "$2"
}

# replace_arg "OLD [V] => NEW [V]": the go mod edit -replace argument for that line.
replace_arg() {
  local -a f
  read -r -a f <<<"$1"
  local i=1 old=${f[0]}
  if [ "${f[1]}" != "=>" ]; then old="$old@${f[1]}"; i=2; fi
  local new=${f[$((i + 1))]}
  if [ -n "${f[$((i + 2))]:-}" ]; then new="$new@${f[$((i + 2))]}"; fi
  echo "-replace=$old=$new"
}

# sumof DIR: checksum of DIR's go.mod and go.sum (which may not exist yet).
sumof() { { cat "$1/go.mod"; cat "$1/go.sum" 2>/dev/null || true; } | cksum; }

# sync_wrapper DIR MODULE VERSION TOOLPKGS STAGING: point the wrapper module DIR at MODULE@VERSION,
# with a tool line for each package of TOOLPKGS (space-separated), and repeat MODULE's replace and
# exclude lines. A replace to a local folder (./staging/src/k8s.io/X) becomes X@STAGING; without
# STAGING such a replace is an error (the proxy can't serve it).
sync_wrapper() {
  local dir=$1 mod=$2 ver=$3 tools=$4 staging=${5:-}
  local upstream line old tool
  upstream=$(cd "$dir" && gomod_of "$mod@$ver")
  [ -n "$upstream" ] || { echo "build.sh: can't download $mod@$ver" >&2; exit 1; }
  local -a args=(-require="$mod@$ver")
  for tool in $tools; do args+=(-tool="$tool"); done
  # Drop what the previous version needed, then add what this one needs.
  while read -r line; do
    [ -n "$line" ] || continue
    read -r old _ <<<"$line"
    args=(-dropreplace="$old" "${args[@]}")
  done < <(directive_lines replace "$dir/go.mod")
  while read -r line; do
    [ -n "$line" ] || continue
    args=(-dropexclude="${line// /@}" "${args[@]}")
  done < <(directive_lines exclude "$dir/go.mod")
  while read -r line; do
    [ -n "$line" ] || continue
    case "$line" in
      *"=> ./"* | *"=> ../"* | *"=> /"*)
        [ -n "$staging" ] || { echo "build.sh: $mod@$ver has a local replace ($line)" >&2; exit 1; }
        read -r old _ <<<"$line"
        args+=(-replace="$old=$old@$staging") ;;
      *) args+=("$(replace_arg "$line")") ;;
    esac
  done < <(directive_lines replace "$upstream")
  while read -r line; do
    [ -n "$line" ] || continue
    args+=(-exclude="${line// /@}")
  done < <(directive_lines exclude "$upstream")
  local before
  before=$(sumof "$dir")
  (cd "$dir" && "$GO" mod edit "${args[@]}")
  if [ ! -f "$dir/go.sum" ] || [ "$before" != "$(sumof "$dir")" ]; then
    echo ">> $dir/go.mod changed: go mod tidy (commit go.mod and go.sum)"
    (cd "$dir" && "$GO" mod tidy)
  fi
}

# install_to DIR: build into DIR.tmp, then move into place, so an interrupted build leaves nothing.
finish() { rm -rf "$2"; mv "$1" "$2"; echo ">> built $2"; }

# The Kubernetes components built from the wrapper module kubernetes/.
kube_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

comp=${1:?usage: build.sh kubernetes|kine|traefik|prometheus}
case "$comp" in
  kubernetes)
    v=$E2E_KUBERNETES_VERSION
    pkgs=()
    for c in "${kube_components[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    sync_wrapper "$tools/kubernetes" k8s.io/kubernetes "$v" "${pkgs[*]}" "v0.${v#v1.}"
    missing=()
    for c in "${kube_components[@]}"; do
      [ -x "$bin/$c-$v/$c" ] || missing+=("$c")
    done
    [ ${#missing[@]} -gt 0 ] || exit 0
    minor=${v#v1.}; minor=${minor%%.*}
    ldflags="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    tmp=$bin/kubernetes-$v.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    pkgs=()
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    start=$(date +%s)
    (cd "$tools/kubernetes" && "${nice[@]}" "$GO" build -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
    echo ">> built ${missing[*]} in $(($(date +%s) - start)) s"
    for c in "${missing[@]}"; do
      mkdir -p "$tmp/$c-$v"
      mv "$tmp/$c" "$tmp/$c-$v/$c"
      finish "$tmp/$c-$v" "$bin/$c-$v"
    done
    rm -rf "$tmp" ;;
  traefik)
    v=$E2E_TRAEFIK_VERSION out=$bin/traefik-$v
    sync_wrapper "$tools/traefik" github.com/traefik/traefik/v3 "$v" github.com/traefik/traefik/v3/cmd/traefik
    rm -rf "$out.tmp"
    (cd "$tools/traefik" && "${nice[@]}" "$GO" build -ldflags "-X github.com/traefik/traefik/v3/pkg/version.Version=$v" \
      -o "$out.tmp/traefik" github.com/traefik/traefik/v3/cmd/traefik)
    finish "$out.tmp" "$out" ;;
  kine)
    v=$E2E_KINE_VERSION out=$bin/kine-$v
    rm -rf "$out.tmp"
    GOBIN=$out.tmp "${nice[@]}" "$GO" install "github.com/k3s-io/kine@$v"
    finish "$out.tmp" "$out" ;;
  prometheus)
    # The tags leave out the service discoveries whose modules the proxy refuses (nomad).
    v=$E2E_PROMETHEUS_VERSION out=$bin/prometheus-$v
    rm -rf "$out.tmp"
    GOBIN=$out.tmp "${nice[@]}" "$GO" install -tags remove_all_sd,enable_kubernetes_sd,enable_dns_sd \
      "github.com/prometheus/prometheus/cmd/prometheus@$v" "github.com/prometheus/prometheus/cmd/promtool@$v"
    finish "$out.tmp" "$out" ;;
  *) echo "build.sh: unknown component $comp" >&2; exit 2 ;;
esac
