#!/bin/sh
# Every benchmark in turn (rows 1-7 of bench/README.md), one after the other, extra arguments
# (for example --quick) passed to each. PYTHONPATH=/other/checkout measures that checkout.
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-.venv/bin/python}
for bench in webhook_latency webhook_throughput room_ready flow room_burst many_devices loop_stall; do
    echo "### bench/$bench.py $*"
    "$PY" "bench/$bench.py" "$@" || echo "### bench/$bench.py failed: $?"
done
