"""Scale-out: ``ceecore run`` in one process against ``ceecore run --cluster local:2``, each
a fresh process (start-up included), and the overhead of the cluster itself.

The cluster run's ``summary.json`` says where its time went: starting the cluster, the
workers' reading and folding, merging their states, scoring, merging their best lines,
the accounts; its extra info (printed) keeps them, and each worker's rows per second,
the numbers behind the README's estimate for a billion lines. At the issue's size:

    CEECORE_BENCH_CLUSTER_INPUT=/tmp/data/g5m.parquet CEECORE_BENCH_ROUNDS=1 \\
        python3 -m pytest benchmarks/test_cluster_speed.py -s

(``ceecore generate -n 5000000 --seed 5 -o /tmp/data/g5m.parquet`` makes that file.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.conftest import ROUNDS
from tests.processes import cli_env

pytest.importorskip("distributed")

RUNS = {
    "ceecore run, 1 process": [],
    "ceecore run, 1 process, 1 thread": ["--threads", "1"],
    "ceecore run --cluster local:2": ["--cluster", "local:2"],
}


@pytest.fixture(scope="module")
def input_file(lines_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CEECORE_BENCH_CLUSTER_INPUT")
    if given:
        return Path(given)
    path = tmp_path_factory.mktemp("cluster") / "lines.parquet"
    pq.write_table(lines_table, path, row_group_size=1 << 16)
    return path


@pytest.mark.benchmark(group="run on a cluster (fresh process)")
@pytest.mark.parametrize("name", list(RUNS))
def test_run(benchmark, input_file, tmp_path, name):  # noqa: ANN001
    env = cli_env()  # (the ceecore the tests import: in CI the installed one, whose kernels are built)
    summaries: list[dict] = []
    walls: list[float] = []

    def run() -> None:
        out = tmp_path / f"out-{len(summaries)}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ceecore", "run", str(input_file), "-q", "-o", str(out), *RUNS[name]],
                       check=True, env=env, cwd=tmp_path)
        walls.append(time.perf_counter() - started)
        summaries.append(json.loads((out / "summary.json").read_text()))

    benchmark.name = f"test_cluster[{name.replace('ceecore run', 'ceecore')}]"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    best = min(range(len(walls)), key=walls.__getitem__)
    summary = summaries[best]
    lines = summary["rows_read"]
    benchmark.extra_info.update(lines=lines, seconds=walls[best], job=summary["seconds"])
    print(f"\n{name}: {lines:,} lines in {walls[best]:.2f} s (whole process; job {summary['seconds']['total']:.2f} s)")
    if "cluster" in summary:
        report = summary["cluster"]
        benchmark.extra_info["cluster"] = report
        phases = report["phases"]
        overhead = phases.get("start", 0) + phases.get("merge", 0) + phases.get("score merge", 0)
        print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
              + f"; the cluster's own (start-up, merges): {overhead:.2f} s")
        for worker, w in report["workers"].items():
            print(f"  {worker}: {w['partitions']} partition tasks, {w['rows']:,} rows in {w['seconds']:.2f} s "
                  f"({w['rows'] / max(w['seconds'], 1e-9):,.0f} rows/s)")
