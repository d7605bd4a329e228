"""Scoring a new period against a model fitted on the history (``ceecore score -o DIR``).

The generated year is cut at October: a model is fitted on the first nine months, and
the last three are scored in process into the whole set (:func:`ceecore.score_period`:
lines, accounts with facilitation tiers, worklist, summary), and, for comparison, into
the scored lines alone (:func:`ceecore.score` to a Parquet file).
"""

from __future__ import annotations

import datetime as dt
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import ceecore
from benchmarks.conftest import ROUNDS


@pytest.fixture(scope="module")
def period(lines_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> tuple[ceecore.Model, str, int]:
    """The model of the first nine months, the last three in a Parquet file, their lines."""
    late = pc.greater_equal(lines_table.column("entry_date"), pa.scalar(dt.date(2025, 10, 1)))
    new = lines_table.filter(late)
    path = tmp_path_factory.mktemp("period") / "new.parquet"
    pq.write_table(new, path, row_group_size=1 << 18)
    return ceecore.fit(lines_table.filter(pc.invert(late))), str(path), new.num_rows


@pytest.mark.benchmark(group="score a period (in process)")
@pytest.mark.parametrize("output", ["set", "lines"])
def test_score_period(benchmark, period, tmp_path, output):  # noqa: ANN001
    model, path, lines = period

    def run() -> None:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        if output == "set":
            ceecore.score_period(path, model, tmp_path / "out")
        else:
            ceecore.score(path, model, output=tmp_path / "out.parquet")

    benchmark.name = f"test_score_period[ceecore score -o {'DIR' if output == 'set' else 'FILE.parquet'}]"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(lines=lines)
