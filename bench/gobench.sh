#!/usr/bin/env bash
# make bench-go: run the Go benchmarks into bench/gobench.txt and summarise them with benchstat into
# bench/benchstat.txt. With a base (BENCH_BASE=<file> or <git revision>), the first table compares
# the base with this tree; a revision is benchmarked in a temporary git worktree, its results kept
# in bench/out/gobench-<revision>.txt.
#
# Environment (set by the Makefile): GO, GOBENCH_ARGS (the go test arguments), BENCHSTAT (the
# pinned benchstat module@version), BENCH_BASE (optional).
set -euo pipefail

: "${GO:=go}" "${GOBENCH_ARGS:?}" "${BENCHSTAT:?}" "${BENCH_BASE:=}"
benchstat() { "$GO" run "$BENCHSTAT" "$@"; }

# shellcheck disable=SC2086 # GOBENCH_ARGS is a list of arguments
"$GO" test $GOBENCH_ARGS > bench/gobench.txt

base=""
if [ -n "$BENCH_BASE" ]; then
  if [ -f "$BENCH_BASE" ]; then
    base=$BENCH_BASE
  else
    rev=$(git rev-parse --short --verify "$BENCH_BASE^{commit}" 2>/dev/null) || {
      echo "BENCH_BASE=$BENCH_BASE is neither a file nor a git revision" >&2; exit 2; }
    mkdir -p bench/out
    base=bench/out/gobench-$rev.txt
    tree=$(mktemp -d)
    trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
    git worktree add --detach --force "$tree" "$rev" >/dev/null
    # shellcheck disable=SC2086
    (cd "$tree" && "$GO" test $GOBENCH_ARGS) > "$base"
  fi
fi

{
  if [ -n "$base" ]; then
    echo "\$ benchstat $base bench/gobench.txt   # before and after"
    benchstat "$base" bench/gobench.txt
  else
    echo '$ benchstat -filter pkg:github.com/opview/opview/exporter/store bench/gobench.txt   # the store'
    benchstat -filter 'pkg:github.com/opview/opview/exporter/store' bench/gobench.txt
  fi
  echo
  echo '$ benchstat -col /server -filter ".name:MetricsHTTP .unit:sec/op" bench/gobench.txt   # /metrics over HTTP: relay vs the same bytes from a bare handler'
  benchstat -col /server -filter '.name:MetricsHTTP .unit:sec/op' bench/gobench.txt
} > bench/benchstat.txt
cat bench/benchstat.txt
