#!/bin/sh
# Runs one shard of a Stampede command, given the shard's 0-based index as the engines hand it
# out (Kubernetes Indexed Jobs' $JOB_COMPLETION_INDEX, a GitHub Actions matrix index) and the
# number of shards. Stampede counts shards from 1 (`--shard I/N`, 1 <= I <= N), so this adds one.
#
#   deploy/shard.sh INDEX COUNT COMMAND [ARG...]
#
# runs COMMAND ARG... --shard INDEX+1/COUNT, with every `{shard}` in the arguments replaced by
# INDEX+1 (for per-shard output folders: --out results/shard-{shard}). With
# STAMPEDE_SHARD_FINDINGS_OK=1, exit status 1 (the runs found violations: a result for the merge
# to report, not a failed shard) becomes 0, so the engine does not retry or fail the shard;
# any other status is passed through (2: bad input).
#
# Example (shard 3 of 4): deploy/shard.sh 2 4 stampede sweep scenarios/ --seeds 1..1000 --out out/shard-{shard}
set -eu

if [ "$#" -lt 3 ]; then
  echo "usage: $0 INDEX COUNT COMMAND [ARG...]  (INDEX from 0, as JOB_COMPLETION_INDEX)" >&2
  exit 2
fi
index=$1
count=$2
shift 2
case "$index" in '' | *[!0-9]*) echo "$0: INDEX '$index' must be a whole number from 0" >&2; exit 2 ;; esac
case "$count" in '' | *[!0-9]*) echo "$0: COUNT '$count' must be a whole number from 1" >&2; exit 2 ;; esac
if [ "$count" -lt 1 ] || [ "$count" -gt 1024 ] || [ "$index" -ge "$count" ]; then
  echo "$0: INDEX $index of COUNT $count: need 0 <= INDEX < COUNT <= 1024" >&2
  exit 2
fi
shard=$((index + 1))

# Rebuild the arguments with {shard} replaced, keeping each one whole.
command=$1
shift
for arg in "$@"; do
  shift
  set -- "$@" "$(printf '%s' "$arg" | sed "s/{shard}/$shard/g")"
done

echo "shard $shard/$count: $command $* --shard $shard/$count" >&2
status=0
"$command" "$@" --shard "$shard/$count" || status=$?
if [ "$status" -eq 1 ] && [ "${STAMPEDE_SHARD_FINDINGS_OK:-0}" = 1 ]; then
  echo "shard $shard/$count: findings (exit 1) kept for the merge" >&2
  exit 0
fi
exit "$status"
