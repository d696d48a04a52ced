#!/usr/bin/env bash
# Scale-out on PostgreSQL (benches/README.md, "Scale-out on PostgreSQL"), in one run:
#  1. the hot-SKU contention table: one checkout transaction per buyer per unit, 64 buyers at
#     once on one SKU of 2,000 units, for each stock design (benches/examples/pg_stock.rs);
#  2. orders/s at saturation (256 connections, closed loop, `POST /v1/orders` on ordinary SKUs)
#     for 1, 2 and 4 `stampede serve` replicas on one PostgreSQL store, and for one replica on
#     the memory and SQLite stores as the baseline of the same run.
#
#   cargo build --release -p stampede -p stampede-benches --example orders --example pg_stock
#   PG=postgres://user:pw@127.0.0.1:5432/db bash benches/scripts/pg_scale.sh [SECONDS]
#
# PG's user must be allowed to create tables; Stampede's and the bench's tables there are dropped.
set -euo pipefail
secs=${1:-10}
: "${PG:?set PG=postgres://user:password@host:port/database}"
bin=./target/release/stampede
orders=./target/release/examples/orders
stock=./target/release/examples/pg_stock
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "| stock design | buyers | orders/s until sold out | checkout p50 | p99 | buyers waiting on a lock (mean) | retries | units the buyers were told they bought | verdict |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
for design in conditional row-lock segmented:8 read-then-write; do
  "$stock" "$PG" "$design" 64 2000
done
psql -q "$PG" -c "DROP TABLE IF EXISTS bench_stock, bench_orders" >/dev/null 2>&1 || true

saturate() { # replicas store -> orders/s
  local n=$1 store=$2 hosts="" port
  "$bin" psp --addr 127.0.0.1:18281 --webhook 127.0.0.1:18200 >"$work/psp.log" 2>&1 &
  local pids=($!)
  for i in $(seq 0 $((n - 1))); do
    port=$((18200 + i))
    local s=$store
    [ "$s" = sqlite ] && s="sqlite:$work/shop-$i.db"
    "$bin" serve --addr 127.0.0.1:$port --psp 127.0.0.1:18281 --store "$s" --workers 4 \
      --seed $((i + 1)) >"$work/serve-$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do
      curl -sf http://127.0.0.1:$port/v1/products >/dev/null && break
      sleep 0.05
    done
    hosts="$hosts${hosts:+,}127.0.0.1:$port"
  done
  "$orders" "$hosts" closed 256 "$secs" | sed -E 's/.* ([0-9]+) orders\/s/\1/'
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -f "$work"/shop-*.db*
}
fresh_pg() { psql -q "$PG" -c "DROP TABLE IF EXISTS stampede_log, stampede_checkpoint, stampede_meta" >/dev/null 2>&1; }

echo
echo "| store | replicas | orders/s, 256 connections | ratio to one PostgreSQL replica |"
echo "| --- | ---: | ---: | ---: |"
mem=$(saturate 1 memory); sq=$(saturate 1 sqlite)
fresh_pg; one=$(saturate 1 "$PG")
echo "| memory | 1 | $mem | $(echo "scale=2; $mem / $one" | bc) |"
echo "| sqlite (sync=full) | 1 | $sq | $(echo "scale=2; $sq / $one" | bc) |"
echo "| postgres | 1 | $one | 1.00 |"
for n in 2 4; do
  fresh_pg; r=$(saturate $n "$PG")
  echo "| postgres | $n | $r | $(echo "scale=2; $r / $one" | bc) |"
done
fresh_pg
