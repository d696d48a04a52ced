#!/usr/bin/env bash
# Renders one page of every kind Stampede writes, checks in headless Chromium that each loads
# nothing from outside its own file, and saves a screenshot per kind in docs/.
#
#   bash docs/screenshots.sh [path/to/stampede]     (default: target/release/stampede)
#
# Needs Debian's `chromium` (apt-get install chromium). Takes a few minutes: one simulated flash
# sale, two short loads, a small sweep and a small compare. Exits non-zero if a page asks for
# anything but its own file (a script, a stylesheet, an image or a font from elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/stampede}
chrome=${CHROMIUM:-chromium}
[ -x "$bin" ] || { echo "no stampede binary at $bin (cargo build --release --bin stampede)" >&2; exit 2; }
command -v "$chrome" >/dev/null || { echo "no $chrome: apt-get install chromium" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each page kind: a name for the screenshot, and the file to open.
pages=()

"$bin" run scenarios/flash-sale.toml --seed 1 --design seed-repo --out "$work/run" >/dev/null || true
pages+=("run-report" "$work/run/report.html")
"$bin" explain "$work/run" --svg "$work/explain.svg" >/dev/null
pages+=("explain" "$work/explain.svg")
"$bin" sweep scenarios/double-click.toml scenarios/job-redelivery.toml scenarios/webhook-storm.toml --seeds 1..8 \
    --design seed-repo --out "$work/sweep" --json >/dev/null || true
pages+=("sweep-report" "$work/sweep/report.html")
"$bin" compare scenarios/double-click.toml --designs reference,seed-repo,textbook-naive \
    --seeds 1..8 --out "$work/compare" --json >/dev/null || true
pages+=("compare-report" "$work/compare/report.html")
for design in reference textbook-naive; do
    "$bin" load --rate 100/s --duration 5s --design "$design" --out "$work/load-$design" \
        --json >/dev/null || true
done
pages+=("load-report" "$work/load-reference/report.html")
"$bin" report "$work/load-reference" "$work/load-textbook-naive" --out "$work/load-compare" >/dev/null
pages+=("load-compare" "$work/load-compare/compare.html")

status=0
for ((i = 0; i < ${#pages[@]}; i += 2)); do
    name=${pages[i]}
    page=${pages[i + 1]}
    [ -s "$page" ] || { echo "✗ $name: $page was not written" >&2; status=1; continue; }
    profile=$(mktemp -d -p "$work")
    # Every request Chromium makes is in the net log; a page that only draws itself makes none
    # outside file:// (Chromium's own background traffic is switched off).
    timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1280,2000 \
        --log-net-log="$work/$name.netlog.json" \
        --screenshot="docs/screenshot-$name.png" "file://$page" >/dev/null 2>&1
    # The page's own requests carry its file:// isolation key; Chromium's background ones do not.
    if python3 - "$work/$name.netlog.json" >"$work/$name.external" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["events"]
asked = sorted({e["params"].get("url") for e in events
                if "file://" in str(e.get("params", {}).get("network_isolation_key", ""))
                and not e["params"].get("url", "file:").startswith("file:")})
print("\n".join(asked))
sys.exit(0 if asked else 1)
PY
    then
        echo "✗ $name: the page asked for more than its own file:" >&2
        head -5 "$work/$name.external" >&2
        status=1
    elif grep -Eqi '<script|<link[^>]+href="https?:|src="https?:|url\(https?:' "$page"; then
        echo "✗ $name: the page names an external resource or a script" >&2
        status=1
    else
        echo "✓ $name: loads nothing from outside; docs/screenshot-$name.png"
    fi
done
exit $status
