"""Consolidation in memory: ceecore against polars and duckdb computing the same aggregates.

Each peer computes, from the same clean lines, every per-account aggregate ceecore
reports (distinct entries, ports, origins, manufacturers and chapters; exact sums;
date range; lines and value per Center via the same HTS -> Center table; the assigned
Center). The differential test (tests/test_accounts.py) checks they agree exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import ceecore
from benchmarks.conftest import ACCOUNTS, LINES, ROUNDS
from benchmarks.peers import duckdb_accounts, polars_accounts
from ceecore.centers import CenterMap


def _run(benchmark, fn):  # noqa: ANN001
    return benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1 if LINES < 1_000_000 else 0)


@pytest.mark.benchmark(group="consolidate in memory")
@pytest.mark.parametrize("threads", [2, 1])
def test_ceecore(benchmark, lines_table, threads):  # noqa: ANN001
    benchmark.name = f"test_consolidate[ceecore {threads} thread{'s' if threads > 1 else ''}]"
    result = _run(benchmark, lambda: ceecore.consolidate(lines_table, threads=threads))
    assert result.num_rows > 0


@pytest.mark.benchmark(group="consolidate in memory")
def test_polars(benchmark, lines_table):  # noqa: ANN001
    benchmark.name = "test_consolidate[polars]"
    result = _run(benchmark, lambda: polars_accounts(lines_table, CenterMap.default()))
    assert result.num_rows > 0


@pytest.mark.benchmark(group="consolidate in memory")
def test_duckdb(benchmark, lines_table):  # noqa: ANN001
    benchmark.name = "test_consolidate[duckdb]"
    result = _run(benchmark, lambda: duckdb_accounts(lines_table, CenterMap.default()))
    assert result.num_rows > 0


# Peak RSS is read from /proc (VmHWM), which starts afresh at exec; getrusage's ru_maxrss
# would count the forking pytest process, data and all.
_PEAK_SCRIPT = """
import json, sys, time
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
base = peak_mb()
import ceecore
imported = peak_mb()
if len(sys.argv) > 1:
    t = time.perf_counter()
    run = ceecore.run_consolidation(sys.argv[1])
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": run.stats.rows_read,
                      "accounts": run.accounts.num_rows, "import_mb": imported, "peak_mb": peak_mb()}))
"""


@pytest.mark.benchmark(group="consolidate streamed parquet")
def test_streamed_parquet_peak_memory(benchmark, lines_table, tmp_path_factory):  # noqa: ANN001
    """Peak RSS of consolidating a Parquet file streamed in batches, in a fresh process."""
    path = tmp_path_factory.mktemp("bench") / "lines.parquet"
    pq.write_table(lines_table, path, row_group_size=256 * 1024)

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout)

    benchmark.name = "test_streamed_parquet[ceecore]"
    report = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        peak_rss_mb=round(report["peak_mb"], 1), import_rss_mb=round(report["import_mb"], 1),
        in_memory_table_mb=round(lines_table.nbytes / 2**20, 1),
        parquet_mb=round(path.stat().st_size / 2**20, 1), lines=LINES, accounts=ACCOUNTS, seconds=report["seconds"],
    )
    print(f"\nstreamed Parquet: {LINES:,} lines, {ACCOUNTS:,} accounts: peak RSS {report['peak_mb']:.0f} MB "
          f"(of which {report['import_mb']:.0f} MB after import; the same lines held in memory as "
          f"Arrow take {lines_table.nbytes / 2**20:.0f} MB; the file {path.stat().st_size / 2**20:.0f} MB)")
    assert report["rows"] == LINES
