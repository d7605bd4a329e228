"""Scoring: the Scorer in memory, `ceecore run` end to end against pyarrow and polars, latency, memory.

- in memory: a fitted model scores the LINES lines (batches of 64k rows) on 1 and 2
  threads (a thread pool over batches: the Scorer is shared);
- end to end: `ceecore.run` on a Parquet file of the lines (fit, then score, every
  output written), with every indicator and with the unit-value one alone, beside the
  time pyarrow takes just to read the columns scoring reads, and a polars
  implementation of the unit-value baseline and score (benchmarks/peers.py) on the
  same file, writing its scored lines too;
- latency: one 1,000-line batch through an embedded Scorer;
- memory: the peak RSS of `ceecore run` in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS
from benchmarks.peers import polars_unit_value_scores
from ceecore.accounts import CONSOLIDATION_COLUMNS
from ceecore.fields import SCORING_COLUMNS
from ceecore.scoring import INDICATORS


@pytest.fixture(scope="module")
def model(lines_table: pa.Table) -> ceecore.Model:
    return ceecore.fit(lines_table)


@pytest.fixture(scope="module")
def lines_file(lines_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("scoring") / "lines.parquet"
    pq.write_table(lines_table, path, row_group_size=1 << 18)
    return str(path)


@pytest.mark.benchmark(group="score in memory")
@pytest.mark.parametrize("threads", [2, 1])
def test_scorer(benchmark, lines_table, model, threads):  # noqa: ANN001
    scorer = ceecore.Scorer(model)
    batches = lines_table.to_batches(max_chunksize=1 << 16)

    def run() -> int:
        with ThreadPoolExecutor(threads) as pool:
            return sum(b.num_rows for b in pool.map(scorer.score, batches))

    benchmark.name = f"test_score[ceecore {threads} thread{'s' if threads > 1 else ''}]"
    benchmark.extra_info["lines"] = LINES
    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == LINES


@pytest.mark.benchmark(group="run end to end (parquet)")
def test_run(benchmark, lines_file, tmp_path):  # noqa: ANN001
    benchmark.name = "test_run[ceecore run]"
    benchmark.extra_info["lines"] = LINES
    summary = benchmark.pedantic(lambda: ceecore.run(lines_file, tmp_path), rounds=ROUNDS, iterations=1)
    assert summary.stats.accepted == LINES


# ceecore doing just what the polars peer does: the unit-value baseline and the line's
# unit-value score (every other indicator's weight 0, so neither fitted nor scored).
UNIT_VALUE_ONLY = ceecore.ScoringConfig.from_doc(
    {"weights": {name: 1.0 if name == "unit_value_outlier" else 0.0 for name in INDICATORS}})


@pytest.mark.benchmark(group="run end to end (parquet)")
def test_run_unit_value_only(benchmark, lines_file, tmp_path):  # noqa: ANN001
    benchmark.name = "test_run[ceecore run, unit value only]"
    benchmark.extra_info["lines"] = LINES
    summary = benchmark.pedantic(lambda: ceecore.run(lines_file, tmp_path, config=UNIT_VALUE_ONLY), rounds=ROUNDS,
                                 iterations=1)
    assert summary.stats.accepted == LINES


@pytest.mark.benchmark(group="run end to end (parquet)")
def test_pyarrow_read(benchmark, lines_file):  # noqa: ANN001
    columns = list(dict.fromkeys(CONSOLIDATION_COLUMNS + SCORING_COLUMNS))
    benchmark.name = "test_run[pyarrow read only]"
    table = benchmark.pedantic(lambda: pq.read_table(lines_file, columns=columns), rounds=ROUNDS, iterations=1)
    assert table.num_rows == LINES


@pytest.mark.benchmark(group="run end to end (parquet)")
def test_polars_unit_value(benchmark, lines_file, tmp_path):  # noqa: ANN001
    benchmark.name = "test_run[polars unit-value baseline + score]"
    scores = benchmark.pedantic(lambda: polars_unit_value_scores(lines_file, output=str(tmp_path / "scores.parquet")),
                                rounds=ROUNDS, iterations=1)
    assert scores.height == LINES


@pytest.mark.benchmark(group="scorer latency (1,000 lines)")
def test_scorer_latency(benchmark, lines_table, model):  # noqa: ANN001
    scorer = ceecore.Scorer(model)
    batch = lines_table.slice(0, 1_000).combine_chunks().to_batches()[0]
    benchmark.name = "test_latency[ceecore Scorer.score]"
    out = benchmark.pedantic(scorer.score, args=(batch,), rounds=max(ROUNDS, 20), iterations=1, warmup_rounds=2)
    assert out.num_rows == 1_000


_RUN_SCRIPT = """
import json, sys, time, ceecore
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
imported = peak_mb()
t = time.perf_counter()
summary = ceecore.run(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "rows": summary.stats.rows_read, "import_mb": imported,
                  "peak_mb": peak_mb()}))
"""


@pytest.mark.benchmark(group="run peak memory")
def test_run_peak_memory(benchmark, lines_file, tmp_path):  # noqa: ANN001
    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, lines_file, str(tmp_path)], check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout)

    benchmark.name = "test_run_memory[ceecore run]"
    report = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(lines=LINES, seconds=report["seconds"], peak_rss_mb=round(report["peak_mb"], 1),
                                import_rss_mb=round(report["import_mb"], 1))
    print(f"\nceecore run: {LINES:,} lines from Parquet in {report['seconds']:.2f} s, peak RSS {report['peak_mb']:.0f} MB "
          f"({report['import_mb']:.0f} MB after import)")
    assert report["rows"] == LINES
