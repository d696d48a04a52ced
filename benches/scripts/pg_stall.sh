#!/usr/bin/env bash
# A PostgreSQL replica paused inside its write transaction: replicas A and B on one database,
# `stampede psp` apart, a stream of `POST /v1/orders` to A; A is stopped with SIGSTOP until
# PostgreSQL shows its session idle in a transaction holding the advisory lock (up to 20 tries),
# and then it times requests to B. Then A is continued and asked again.
#
#   cargo build --release -p stampede
#   pg_virtualenv -v 15 bash benches/scripts/pg_stall.sh    # PG from pg_virtualenv's PG* variables
#
# Prints each request's status and time (benches/README.md, "A replica paused inside its write
# transaction"). Needs psql, curl and python3. Logs stay in the printed directory.
set -uo pipefail
bin=${STAMPEDE:-$PWD/target/release/stampede}
url=${PG:-postgresql://${PGUSER:?set PG or run under pg_virtualenv}:${PGPASSWORD:-}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/${PGDATABASE:-postgres}}
work=$(mktemp -d)
echo "logs in $work"
cd "$work"
cat > drive.py <<'PY'
import http.client, json, sys, threading
host, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def worker(t):
    c = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(t, 10**7, threads):
        body = json.dumps({"customer_id": f"c{i % 500}", "items": [{"sku": "mug", "qty": 1}]})
        try:
            c.request("POST", "/v1/orders", body,
                      {"content-type": "application/json", "Idempotency-Key": f"drive-{i}"})
            c.getresponse().read()
        except Exception:
            c = http.client.HTTPConnection(host, port, timeout=30)
for t in range(threads):
    threading.Thread(target=worker, args=(t,), daemon=True).start()
threading.Event().wait()
PY
"$bin" psp --addr 127.0.0.1:29181 --webhook 127.0.0.1:29180 > psp.log 2>&1 & psp=$!
"$bin" serve --addr 127.0.0.1:29180 --psp 127.0.0.1:29181 --store "$url" --catalog load > a.log 2>&1 & a=$!
sleep 2
"$bin" serve --addr 127.0.0.1:29190 --psp 127.0.0.1:29181 --store "$url" --catalog load > b.log 2>&1 & b=$!
sleep 2
python3 drive.py 127.0.0.1 29180 4 > drive.log 2>&1 & drive=$!
trap 'kill -CONT $a 2>/dev/null; kill $drive $a $b $psp 2>/dev/null; wait 2>/dev/null' EXIT
sleep 2
order() { # $1: port, $2: key, $3: label
  curl -s -o /dev/null -m 45 -w "$3: %{http_code} in %{time_total}s\n" -X POST "127.0.0.1:$1/v1/orders" \
    -H 'content-type: application/json' -H "Idempotency-Key: $2" \
    -d '{"customer_id":"f","items":[{"sku":"mug","qty":1}]}'
}
for try in $(seq 1 20); do
  kill -STOP $a
  sleep 0.3
  held=$(psql "$url" -tA -c "select count(*) from pg_locks l join pg_stat_activity s using (pid)
        where l.locktype = 'advisory' and l.granted and s.state like 'idle in transaction%'")
  if [ "${held:-0}" -ge 1 ]; then
    echo "A stopped inside its transaction (try $try)"
    for i in 1 2 3; do order 29190 "stall-$i" "B POST /v1/orders ($i)"; done
    curl -s -o /dev/null -m 45 -w "B GET /v1/products: %{http_code} in %{time_total}s\n" 127.0.0.1:29190/v1/products
    curl -s -o /dev/null -m 45 -w "B GET /readyz: %{http_code} in %{time_total}s\n" 127.0.0.1:29190/readyz
    kill -CONT $a
    sleep 3
    for i in 1 2; do order 29180 "after-$i" "A POST /v1/orders after it went on ($i)"; done
    exit 0
  fi
  kill -CONT $a
  sleep 0.2
done
echo "A was never caught inside its transaction in 20 tries" >&2
exit 1
