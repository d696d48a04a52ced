"""Reads a stampede `latency.hlog` with the `hdrhistogram` package from PyPI
(an HdrHistogram implementation independent of the Rust crate that wrote it)
and prints, per tag, the intervals added up: count, max, the values at a few
percentiles and every recorded bucket, as JSON on stdout.

Usage: python hlog_interop.py LOG PERCENTILE...
"""

import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def main():
    path, percentiles = sys.argv[1], [float(p) for p in sys.argv[2:]]
    # Only a template for the reader; each interval decodes with its own bounds.
    reader = HistogramLogReader(path, HdrHistogram(1, 600_000_000, 3))
    by_tag = {}
    intervals = 0
    while True:
        interval = reader.get_next_interval_histogram()
        if interval is None:
            break
        intervals += 1
        tag = interval.get_tag()
        if tag not in by_tag:
            by_tag[tag] = HdrHistogram(1, 600_000_000, 3)
        by_tag[tag].add(interval)
    reader.close()
    out = {"intervals": intervals, "tags": {}}
    for tag, h in sorted(by_tag.items()):
        out["tags"][tag] = {
            "count": h.get_total_count(),
            "max": h.get_max_value(),
            "percentiles": [h.get_value_at_percentile(p) for p in percentiles],
            "buckets": [
                [item.value_iterated_to, item.count_at_value_iterated_to]
                for item in h.get_recorded_iterator()
            ],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
