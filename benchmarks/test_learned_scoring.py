"""Learning from outcomes: fit time with labels, and scoring throughput with history and trees.

- fit: `ceecore.fit(..., labels=...)` on the LINES lines in memory (baselines, outcome
  history, the out-of-fold training matrix of the inspected lines, LightGBM's
  trees), beside the unsupervised fit of the same lines;
- score: a learned model's Scorer on the lines (batches of 64k rows, 2 threads): the
  indicators plus the history rates of 12 keys and the compiled tree kernel, beside the
  unsupervised Scorer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS


@pytest.fixture(scope="module")
def learned(lines_table: pa.Table) -> ceecore.Model:
    return ceecore.fit(lines_table, labels=ceecore.Labels("violation", "revenue_recovered"))


@pytest.mark.benchmark(group="fit (in memory)")
@pytest.mark.parametrize("labels", [True, False])
def test_fit(benchmark, lines_table, labels):  # noqa: ANN001
    benchmark.name = f"test_fit[ceecore {'with labels' if labels else 'unsupervised'}]"
    benchmark.extra_info["lines"] = LINES
    model = benchmark.pedantic(lambda: ceecore.fit(lines_table, labels="violation" if labels else None),
                               rounds=ROUNDS, iterations=1)
    assert (model.learned is not None) == labels


@pytest.mark.benchmark(group="score in memory, learned")
@pytest.mark.parametrize("kind", ["learned", "unsupervised"])
def test_score_learned(benchmark, lines_table, learned, kind):  # noqa: ANN001
    scorer = ceecore.Scorer(learned if kind == "learned" else ceecore.fit(lines_table))
    batches = lines_table.to_batches(max_chunksize=1 << 16)

    def run() -> int:
        with ThreadPoolExecutor(2) as pool:
            return sum(b.num_rows for b in pool.map(scorer.score, batches))

    benchmark.name = f"test_score[ceecore {kind}, 2 threads]"
    benchmark.extra_info["lines"] = LINES
    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == LINES
