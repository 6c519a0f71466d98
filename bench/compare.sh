#!/bin/sh
# Before and after in one run: every row of bench/README.md measured on another checkout
# (BEFORE, for example main at an older commit: `git worktree add --detach ../before <commit>`)
# and then on this one, back to back, row by row, with the same benchmark code. Rows 8-9 restart
# both on the same data (restart_rss.py --before-src). Extra arguments (for example --quick) go
# to rows 1-7.
#
#     bench/compare.sh BEFORE [--quick]
cd "$(dirname "$0")/.." || exit 1
BEFORE=$(cd "${1:?usage: bench/compare.sh BEFORE_CHECKOUT [--quick]}" && pwd) || exit 1
shift
PY=${PYTHON:-.venv/bin/python}
for bench in webhook_latency webhook_throughput room_ready flow room_burst many_devices loop_stall; do
    echo "### bench/$bench.py $* -- before: $BEFORE"
    PYTHONPATH="$BEFORE" "$PY" "bench/$bench.py" "$@" || echo "### before failed: $?"
    echo "### bench/$bench.py $* -- after: $(pwd)"
    "$PY" "bench/$bench.py" "$@" || echo "### after failed: $?"
done
case " $* " in
*" --quick "*) "$PY" bench/restart_rss.py --quick --before-src "$BEFORE" ;;
*) "$PY" bench/restart_rss.py --before-src "$BEFORE" ;;
esac
