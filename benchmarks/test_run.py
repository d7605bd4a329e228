"""Scoring: `ceecore run` end to end against its peers, the embedded Scorer, latency, model loading.

- run, fresh processes: each job of benchmarks/jobs.py (``ceecore run``, the same with
  the unit-value indicator alone, the polars, duckdb and pyarrow peers) on the same
  Parquet file, each a new process; the time is the process's, start-up included, and
  each job's peak RSS is kept in its extra info (and printed);
- the Scorer in memory: a fitted model scores the lines in batches of 1,000 and 100,000
  rows, on 1 and 2 threads (a thread pool over batches sharing one Scorer);
- latency: one line, and one 1,000-line batch, through an embedded Scorer;
- model loading: a fresh process loads the model ``ceecore run`` wrote (time, peak RSS).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS
from benchmarks.jobs import JOBS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(lines_table: pa.Table) -> ceecore.Model:
    return ceecore.fit(lines_table)


@pytest.fixture(scope="module")
def lines_file(lines_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("scoring") / "lines.parquet"
    pq.write_table(lines_table, path, row_group_size=1 << 18)
    return str(path)


def _fresh(*args: str) -> dict:
    """Runs ``python -m benchmarks.jobs ARGS`` (or another module's ``-c`` script) in a new
    process; its JSON report."""
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="run, fresh process (parquet)")
@pytest.mark.parametrize("job", list(JOBS))
def test_job(benchmark, lines_file, tmp_path, job):  # noqa: ANN001
    reports = []

    def run() -> None:
        output = tmp_path / f"out-{len(reports)}"
        reports.append(_fresh("-m", "benchmarks.jobs", job, lines_file, str(output if job.startswith("ceecore")
                                                                                else output.with_suffix(".parquet"))))

    benchmark.name = f"test_run[{job.replace('ceecore', 'ceecore run', 1)}]"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    peak = max(r["peak_mb"] for r in reports)
    benchmark.extra_info.update(lines=LINES, peak_rss_mb=round(peak, 1),
                                seconds=min(r["seconds"] for r in reports))
    print(f"\n{job}: {LINES:,} lines in {min(r['seconds'] for r in reports):.2f} s (in process), peak RSS {peak:.0f} MB")


@pytest.mark.benchmark(group="score in memory")
@pytest.mark.parametrize("batch_rows", [100_000, 1_000])
@pytest.mark.parametrize("threads", [2, 1])
def test_scorer(benchmark, lines_table, model, threads, batch_rows):  # noqa: ANN001
    scorer = ceecore.Scorer(model)
    batches = lines_table.to_batches(max_chunksize=batch_rows)

    def run() -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(b.num_rows for b in pool.map(scorer.score, batches))

    benchmark.name = f"test_score[ceecore {threads} thread{'s' if threads > 1 else ''}, {batch_rows:,}-line batches]"
    benchmark.extra_info["lines"] = LINES
    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == LINES


@pytest.mark.benchmark(group="scorer latency")
@pytest.mark.parametrize("rows", [1, 1_000])
def test_scorer_latency(benchmark, lines_table, model, rows):  # noqa: ANN001
    scorer = ceecore.Scorer(model)
    batch = lines_table.slice(0, rows).combine_chunks().to_batches()[0]
    benchmark.name = f"test_latency[ceecore Scorer.score, {rows:,} line{'s' if rows > 1 else ''}]"
    out = benchmark.pedantic(scorer.score, args=(batch,), rounds=max(ROUNDS, 50), iterations=1, warmup_rounds=5)
    assert out.num_rows == rows


_LOAD_SCRIPT = """
import json, sys, time
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
import ceecore
imported = peak_mb()
t = time.perf_counter()
scorer = ceecore.load_model(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "import_mb": imported, "peak_mb": peak_mb()}))
"""


@pytest.mark.benchmark(group="model load")
def test_model_load(benchmark, lines_file, tmp_path):  # noqa: ANN001
    ceecore.run(lines_file, tmp_path)
    path = tmp_path / "model.arrow"
    reports = []
    benchmark.name = "test_load[ceecore load_model]"
    benchmark.pedantic(lambda: reports.append(_fresh("-c", _LOAD_SCRIPT, str(path))), rounds=ROUNDS, iterations=1)
    best = min(reports, key=lambda r: r["seconds"])
    benchmark.extra_info.update(seconds_in_process=round(best["seconds"], 3), model_mb=round(path.stat().st_size / 2**20, 1),
                                peak_rss_mb=round(best["peak_mb"], 1), after_import_mb=round(best["import_mb"], 1))
    print(f"\nmodel of {LINES:,} lines ({path.stat().st_size / 2**20:.0f} MB): loaded in {best['seconds']:.2f} s, "
          f"peak RSS {best['peak_mb']:.0f} MB ({best['import_mb']:.0f} MB after import)")
