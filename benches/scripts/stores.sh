#!/usr/bin/env bash
# Orders accepted per second at saturation, and latency at half of it, for each store of
# `stampede serve`, in one run (benches/README.md, "Durable state on one machine").
#
#   cargo build --release -p stampede -p stampede-benches --example orders
#   bash benches/scripts/stores.sh [SECONDS]        # default 10 s per measurement
#
# Each store gets a fresh shop (and a fresh database file under $TMPDIR) for each saturation
# run (32, then 256 connections in a closed loop: a durable store's throughput is bound by how
# many commands share a commit, so it needs the concurrency a real checkout has) and another for
# its open-loop run at half the higher of the two rates. Output: one Markdown table row per store.
set -euo pipefail
secs=${1:-10}
bin=./target/release/stampede
orders=./target/release/examples/orders
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18180

serve() { # store-args... ; starts a fresh shop on $port, waits until it answers
  rm -f "$work"/shop.db*
  "$bin" serve --addr 127.0.0.1:$port --workers 4 "$@" >"$work/serve.log" 2>&1 &
  for _ in $(seq 1 200); do
    curl -sf http://127.0.0.1:$port/v1/products >/dev/null && return 0
    sleep 0.05
  done
  cat "$work/serve.log"; exit 1
}
stop() { kill %1 2>/dev/null || true; wait 2>/dev/null || true; }

echo "| store | orders/s, 32 connections | orders/s, 256 connections | saturation: ratio to memory | open loop at half: p50 | p99 | sent >5 ms late |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
memory=""
while IFS='|' read -r label args; do
  rates=()
  for conns in 32 256; do
    # shellcheck disable=SC2086
    serve $args
    rates+=("$("$orders" 127.0.0.1:$port closed "$conns" "$secs" | sed -E 's/.* ([0-9]+) orders\/s/\1/')")
    stop
  done
  sat=$(( rates[0] > rates[1] ? rates[0] : rates[1] ))
  memory=${memory:-$sat}
  half=$(( sat / 2 > 0 ? sat / 2 : 1 ))
  # shellcheck disable=SC2086
  serve $args
  open=$("$orders" 127.0.0.1:$port open "$half" "$secs" 2>/dev/null || true)
  stop
  p50=$(echo "$open" | sed -nE 's/.*p50 ([0-9.]+) ms.*/\1/p')
  p99=$(echo "$open" | sed -nE 's/.*p99 ([0-9.]+) ms.*/\1/p')
  late=$(echo "$open" | sed -nE 's/.*; ([0-9]+) sent >5 ms late.*/\1/p')
  ratio=$(python3 -c "print(f'{$sat / $memory:.2f}')")
  echo "| $label | ${rates[0]} | ${rates[1]} | $ratio | ${p50:-?} ms at $half/s | ${p99:-?} ms | ${late:-?} of $(( half * secs )) |"
done <<ROWS
memory|--store memory
sqlite, sync=full, group commit|--store sqlite:$work/shop.db --sync full
sqlite, sync=normal, group commit|--store sqlite:$work/shop.db --sync normal
sqlite, sync=full, one commit per command|--store sqlite:$work/shop.db --sync full --sqlite-batch 1
sqlite, sync=normal, one commit per command|--store sqlite:$work/shop.db --sync normal --sqlite-batch 1
ROWS
