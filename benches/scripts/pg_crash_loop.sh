#!/usr/bin/env bash
# A crash loop against two `stampede serve` replicas on one PostgreSQL database: `stampede psp`
# runs apart (its webhooks go to replica A), `stampede load --host A,B --psp … --hold 10s`
# drives 200 journeys/s spread over both, and replica B (VICTIM=a: A, which also receives the
# PSP's webhooks) is killed with SIGKILL every INTERVAL seconds (plus 0.1–0.9 s) and started again
# on the same database, KILLS times. The load's verdict is the result: every invariant judged on
# the whole run (README, "Storage").
#
#   cargo build --release -p stampede
#   PG=postgres://user:password@host:port/db bash benches/scripts/pg_crash_loop.sh [KILLS] [INTERVAL]
#   pg_virtualenv -v 15 bash benches/scripts/pg_crash_loop.sh 6 3    # PG from pg_virtualenv's PG* variables
#
# The database's Stampede tables are dropped first (a fresh shop). Exit status: the load's
# (0 every invariant held, 1 a violation). Report and logs stay in the printed directory.
set -euo pipefail
kills=${1:-6}
every=${2:-3}
bin=${STAMPEDE:-./target/release/stampede}
url=${PG:-postgresql://${PGUSER:?set PG or run under pg_virtualenv}:${PGPASSWORD:-}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/${PGDATABASE:-postgres}}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
a=127.0.0.1:18190
psp=127.0.0.1:18191
b=127.0.0.1:18192

psql "$url" -q -c "DROP TABLE IF EXISTS stampede_log, stampede_checkpoint, stampede_holders, stampede_meta"
"$bin" psp --addr "$psp" --webhook "$a" >"$work/psp.log" 2>&1 &
# serve NAME ADDR: a replica in the background; its pid in pid_NAME.
serve() {
  "$bin" serve --addr "$2" --psp "$psp" --store "$url" >>"$work/$1.log" 2>&1 &
  printf -v "pid_$1" '%s' "$!"
}
up() {
  for _ in $(seq 1 100); do
    curl -sf "http://$1/healthz" >/dev/null && break
    sleep 0.05
  done
}
serve a "$a"
up "$a"
serve b "$b"
up "$b"
victim=${VICTIM:-b}
case "$victim" in
  a) victim_addr=$a ;;
  b) victim_addr=$b ;;
  *) echo "VICTIM must be a or b, not $victim" >&2; exit 2 ;;
esac
duration=$(( kills * every + 10 ))
"$bin" load --host "http://$a,http://$b" --psp "http://$psp" --hold 10s --rate 200/s \
  --duration "${duration}s" --out "$work/load" >"$work/load.log" 2>&1 &
load_pid=$!
for n in $(seq 1 "$kills"); do
  sleep "$every"
  pid_var="pid_$victim"
  kill -9 "${!pid_var}" 2>/dev/null || true
  wait "${!pid_var}" 2>/dev/null || true
  sleep "0.$(( RANDOM % 9 + 1 ))"
  serve "$victim" "$victim_addr"
  echo "kill $n"
done
status=0
wait "$load_pid" || status=$?
grep -E "verdict|✗" "$work/load.log" || true
grep -E "connection to PostgreSQL is gone" "$work/a.log" "$work/b.log" | tail -3 || true
echo "report and logs in $work"
exit "$status"
