"""Whole jobs on a Parquet file of entry lines, each meant to run as a fresh process:
``ceecore run`` and its peers, written as a competent user of each library writes them.

- ``ceecore``: ``ceecore.run`` with the default config (every indicator, accounts,
  worklists, the model); ``ceecore-unit-value``: the same with the unit-value outlier
  indicator alone (like for like with the peers);
- ``polars``: a lazy scan, the unit-value norms as window expressions, the scores
  written with ``sink_parquet``;
- ``duckdb``: the same in SQL (``median``, ``quantile_cont``, ``COPY ... TO``);
- ``pyarrow``: no work at all, just reading the columns and writing the ids and a score;
- ``polars-mad`` and ``duckdb-mad``: a simpler job, the one the engine issue measured
  first: one level (HTS10 x origin), the median and the MAD, a robust z per line.

The peers compute what ceecore's ``unit_value_outlier`` does: per line, the log unit
value (per unit of quantity, else per kg) against the median and robust spread
((q75 - q25) / 1.349, at least 0.05) of its group — HTS10 x origin, else HTS10, HTS6
or HTS4, the first with 30 lines — and a strength ramping from 0 at 2.5 spreads to 1
at 5 (ceecore bins the unit values in 5% bins, so the two agree to within a bin; see
tests/test_scoring.py). Each writes the 7 id columns and the score.

    python -m benchmarks.jobs ENGINE INPUT OUTPUT    # prints {"seconds", "peak_mb"} as JSON

Engines are imported inside their job, so each process loads only its own.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

ID_COLUMNS = ["entry_number", "line_number", "importer_id", "entry_date", "port_code", "hts_code",
              "country_of_origin"]
READ_COLUMNS = ID_COLUMNS + ["entered_value", "duty_paid", "duty_rate", "quantity", "gross_weight_kg",
                             "manufacturer_id", "spi"]
MIN_LINES, Z_FROM, Z_TO, MIN_SPREAD = 30, 2.5, 5.0, 0.05


def polars_scores(source: Any, output: str | None = None) -> Any:
    """The unit-value scores with polars: window expressions over a lazy scan, streamed
    out with ``sink_parquet`` (or collected, with ``output`` None)."""
    import polars as pl

    lines = pl.scan_parquet(source) if isinstance(source, str) else pl.from_arrow(source).lazy()
    value, quantity, weight = pl.col("entered_value"), pl.col("quantity"), pl.col("gross_weight_kg")
    per_unit = (quantity > 0) & (value > 0)
    per_kg = ~per_unit & (weight > 0) & (value > 0)
    hts = pl.col("hts_code").str.replace_all(r"[ .]", "")
    lines = lines.with_columns(
        log_uv=pl.when(per_unit).then((value / quantity).log()).when(per_kg).then((value / weight).log()),
        basis=pl.when(per_unit).then(0).otherwise(1),
        hts10=hts, hts6=hts.str.slice(0, 6), hts4=hts.str.slice(0, 4),
    )
    x = pl.col("log_uv")
    centre: Any = pl
    spread: Any = pl
    for keys in (["hts10", "country_of_origin"], ["hts10"], ["hts6"], ["hts4"]):
        over = ["basis", *keys]
        enough = x.count().over(over) >= MIN_LINES
        centre = centre.when(enough).then(x.median().over(over))
        spread = spread.when(enough).then(((x.quantile(0.75, "linear") - x.quantile(0.25, "linear")) / 1.349)
                                          .over(over))
    z = (x - centre.otherwise(None)) / pl.max_horizontal(spread.otherwise(None), pl.lit(MIN_SPREAD))
    scores = lines.select(*ID_COLUMNS, ((z.abs() - Z_FROM) / (Z_TO - Z_FROM)).clip(0, 1).fill_null(0).alias("score"),
                          z.alias("unit_value_z"))
    if output is None:
        return scores.collect()
    scores.sink_parquet(output)
    return None


def duckdb_scores(source: str, output: str, threads: int | None = None) -> None:
    """The unit-value scores in duckdb SQL: the norms per group and level, joined back to
    the lines, copied to Parquet."""
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    levels = {"0": "hts10, country_of_origin", "1": "hts10", "2": "hts6", "3": "hts4"}
    norms = ",\n".join(
        f"""n{k} AS (SELECT basis, {keys}, count(log_uv) AS n{k}, median(log_uv) AS m{k},
                  (quantile_cont(log_uv, 0.75) - quantile_cont(log_uv, 0.25)) / 1.349 AS s{k}
              FROM l GROUP BY basis, {keys})""" for k, keys in levels.items())
    joins = "\n".join(f"LEFT JOIN n{k} USING (basis, {keys})" for k, keys in levels.items())
    pick = " ".join(f"WHEN n{k} >= {MIN_LINES} THEN {{}}{k}" for k in levels)
    ids = ", ".join(ID_COLUMNS)
    con.execute(f"""
    COPY (
        WITH l AS (
            SELECT {ids},
                replace(replace(hts_code, '.', ''), ' ', '') AS hts10,
                substr(replace(replace(hts_code, '.', ''), ' ', ''), 1, 6) AS hts6,
                substr(replace(replace(hts_code, '.', ''), ' ', ''), 1, 4) AS hts4,
                CASE WHEN quantity > 0 AND entered_value > 0 THEN ln(entered_value / quantity)
                     WHEN gross_weight_kg > 0 AND entered_value > 0 THEN ln(entered_value / gross_weight_kg)
                END AS log_uv,
                CASE WHEN quantity > 0 AND entered_value > 0 THEN 0 ELSE 1 END AS basis
            FROM read_parquet('{source}')
        ),
        {norms},
        z AS (
            SELECT {ids}, (log_uv - CASE {pick.format(*"mmmm")} END)
                / greatest(CASE {pick.format(*"ssss")} END, {MIN_SPREAD}) AS unit_value_z
            FROM l {joins}
        )
        SELECT {ids}, coalesce(least(1, greatest(0, (abs(unit_value_z) - {Z_FROM}) / {Z_TO - Z_FROM})), 0) AS score,
            unit_value_z
        FROM z
    ) TO '{output}' (FORMAT parquet)
    """)


def pyarrow_read_write(source: str, output: str) -> None:
    """No work: read the columns ceecore reads, write the ids and a score."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source, columns=READ_COLUMNS)
    out = table.select(ID_COLUMNS).append_column("score", pa.array(np.zeros(table.num_rows)))
    pq.write_table(out, output)


def polars_mad_scores(source: str, output: str) -> None:
    """The simpler job in polars: per HTS10 x origin the median and MAD of the log unit
    value (window expressions over a lazy scan), a robust z per line, sunk to Parquet."""
    import polars as pl

    value, quantity, weight = pl.col("entered_value"), pl.col("quantity"), pl.col("gross_weight_kg")
    per_unit = (quantity > 0) & (value > 0)
    group = ["hts_code", "country_of_origin"]
    lines = pl.scan_parquet(source).with_columns(
        log_uv=pl.when(per_unit).then((value / quantity).log()).when((weight > 0) & (value > 0))
        .then((value / weight).log()))
    lines = lines.with_columns(median=pl.col("log_uv").median().over(group))
    lines = lines.with_columns(mad=(pl.col("log_uv") - pl.col("median")).abs().median().over(group))
    z = (pl.col("log_uv") - pl.col("median")) / (1.4826 * pl.col("mad"))
    lines.select(*ID_COLUMNS, ((z.abs() - Z_FROM) / (Z_TO - Z_FROM)).clip(0, 1).fill_null(0).alias("score")) \
        .sink_parquet(output)


def duckdb_mad_scores(source: str, output: str) -> None:
    """The simpler job in duckdb SQL: ``median`` and ``mad`` per HTS10 x origin, joined back."""
    import duckdb

    ids = ", ".join(ID_COLUMNS)
    duckdb.connect().execute(f"""
    COPY (
        WITH l AS (
            SELECT {ids},
                CASE WHEN quantity > 0 AND entered_value > 0 THEN ln(entered_value / quantity)
                     WHEN gross_weight_kg > 0 AND entered_value > 0 THEN ln(entered_value / gross_weight_kg)
                END AS log_uv
            FROM read_parquet('{source}')
        ), n AS (
            SELECT hts_code, country_of_origin, median(log_uv) AS m, mad(log_uv) AS d FROM l
            GROUP BY hts_code, country_of_origin
        )
        SELECT {ids}, coalesce(least(1, greatest(0, (abs((log_uv - m) / (1.4826 * d)) - {Z_FROM}) / {Z_TO - Z_FROM})),
                               0) AS score
        FROM l JOIN n USING (hts_code, country_of_origin)
    ) TO '{output}' (FORMAT parquet)
    """)


def ceecore_run(source: str, output: str, unit_value_only: bool = False) -> None:
    """``ceecore run`` as the command runs it (its process-wide heap bound included)."""
    import ceecore
    from ceecore.indicators import INDICATORS
    from ceecore.pipeline import bound_heap

    bound_heap()
    config = ceecore.ScoringConfig.from_doc(
        {"weights": {name: 1.0 if name == "unit_value_outlier" else 0.0 for name in INDICATORS}}) \
        if unit_value_only else None
    ceecore.run(source, output, config=config)


JOBS = {
    "ceecore": ceecore_run,
    "ceecore-unit-value": lambda source, output: ceecore_run(source, output, unit_value_only=True),
    "polars": polars_scores,
    "duckdb": duckdb_scores,
    "pyarrow": pyarrow_read_write,
    "polars-mad": polars_mad_scores,
    "duckdb-mad": duckdb_mad_scores,
}


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


if __name__ == "__main__":
    engine, source, output = sys.argv[1:4]
    started = time.perf_counter()
    JOBS[engine](source, output)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}))
