#!/usr/bin/env bash
# A crash loop against the served shop: `stampede serve` (SQLite) and `stampede psp` run apart,
# `stampede load --host … --psp … --hold 10s` drives 200 journeys/s, and the shop is killed with
# SIGKILL every INTERVAL seconds (plus 0.1–0.9 s) and started again on the same file, KILLS times.
# The load's verdict is the result: every invariant judged on the whole run (README, "Serving").
#
#   cargo build --release -p stampede
#   bash benches/scripts/crash_loop.sh [KILLS] [INTERVAL] [-- extra serve options]
#   bash benches/scripts/crash_loop.sh 6 3                    # the README's figure
#   bash benches/scripts/crash_loop.sh 6 3 -- --set commit=ack-first   # must FAIL
#
# Exit status: the load's (0 every invariant held, 1 a violation). The load's report and the
# shop's log stay in the printed directory.
set -euo pipefail
kills=${1:-6}
every=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
bin=${STAMPEDE:-./target/release/stampede}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
shop=127.0.0.1:18190
psp=127.0.0.1:18191

serve() {
  "$bin" serve --addr "$shop" --psp "$psp" --store "sqlite:$work/shop.db" "$@" >>"$work/serve.log" 2>&1 &
  shop_pid=$!
}

"$bin" psp --addr "$psp" --webhook "$shop" >"$work/psp.log" 2>&1 &
serve "$@"
for _ in $(seq 1 100); do
  curl -sf "http://$shop/healthz" >/dev/null && break
  sleep 0.05
done
duration=$(( kills * every + 10 ))
"$bin" load --host "http://$shop" --psp "http://$psp" --hold 10s --rate 200/s \
  --duration "${duration}s" --out "$work/load" >"$work/load.log" 2>&1 &
load_pid=$!
for n in $(seq 1 "$kills"); do
  sleep "$every"
  kill -9 "$shop_pid" 2>/dev/null || true
  wait "$shop_pid" 2>/dev/null || true
  sleep "0.$(( RANDOM % 9 + 1 ))"
  serve "$@"
  echo "kill $n"
done
status=0
wait "$load_pid" || status=$?
grep -E "verdict|✗" "$work/load.log" || true
grep -E "resumed" "$work/serve.log" || true
echo "report and logs in $work"
exit "$status"
