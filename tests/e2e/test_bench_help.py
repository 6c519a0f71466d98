"""Each benchmark in bench/ starts and explains itself (`--help`); none is run by pytest (speed
is measured by the benchmarks, never asserted in tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
BENCHMARKS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_every_row_of_the_table_has_its_benchmark() -> None:
    assert set(BENCHMARKS) >= {
        "webhook_latency.py",
        "webhook_throughput.py",
        "room_ready.py",
        "flow.py",
        "room_burst.py",
        "many_devices.py",
        "loop_stall.py",
    }


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_imports_and_prints_its_usage(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent)}
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(BENCH / name), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert "--quick" in done.stdout
