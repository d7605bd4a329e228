"""The same per-account aggregates as ceecore's consolidation, computed by polars and duckdb.

Used side by side with ceecore in the benchmarks and as the independent engine of the
differential test. Both peers take clean canonical lines (no rejects) and return
:data:`COLUMNS`, sorted by importer; :func:`ceecore_view` projects ceecore's result to
the same shape so the tables can be compared exactly.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ceecore.centers import CenterMap

COLUMNS = [
    "importer_id", "lines", "entries", "ports", "countries", "manufacturers", "hts_chapters",
    "value_cents", "duty_cents", "first_entry_date", "last_entry_date", "center",
    "center_lines", "center_value_cents",
]


def center_lookup(centers: CenterMap) -> pa.Table:
    """(epoch start, epoch end, heading, center code) rows: the Center map as a join table."""
    starts, table = centers.lookup_tables()
    ends = np.append(starts[1:], np.iinfo(np.int32).max)
    epoch, heading = np.nonzero(table >= 0)
    codes = np.array(centers.codes, dtype=object)
    return pa.table({
        "start_day": pa.array(starts[epoch].astype(np.int32)),
        "end_day": pa.array(ends[epoch].astype(np.int32)),
        "heading": pa.array(heading.astype(np.int32)),
        "center": pa.array(codes[table[epoch, heading]], pa.string()),
    })


def polars_accounts(lines: pa.Table, centers: CenterMap) -> pa.Table:
    """Per-account aggregates with polars (lazy, multi-threaded)."""
    lookup = pl.from_arrow(center_lookup(centers)).lazy()
    df = pl.from_arrow(lines).lazy()
    hts = pl.col("hts_code").str.replace_all(r"[. ]", "")
    cents = (pl.col("entered_value") * 100).round(0, mode="half_away_from_zero").cast(pl.Int64)
    df = df.with_columns(
        cents=cents,
        chapter=hts.str.slice(0, 2),
        heading=hts.str.slice(0, 4).cast(pl.Int32),
        day=pl.col("entry_date").cast(pl.Int32),
        port=pl.col("port_code").str.zfill(4),
        country=pl.col("country_of_origin").str.to_uppercase(),
    ).with_columns(
        duty=(pl.col("cents").cast(pl.Float64) * pl.col("duty_rate") / 100)
        .round(0, mode="half_away_from_zero").cast(pl.Int64),
    ).with_row_index("row")
    centered = (df.select("row", "heading", "day").join(lookup, on="heading")
                .filter((pl.col("day") >= pl.col("start_day")) & (pl.col("day") < pl.col("end_day")))
                .select("row", "center"))
    df = df.join(centered, on="row", how="left")
    accounts = df.group_by("importer_id").agg(
        lines=pl.len(),
        entries=pl.col("entry_number").n_unique(),
        ports=pl.col("port").n_unique(),
        countries=pl.col("country").n_unique(),
        manufacturers=pl.col("manufacturer_id").drop_nulls().n_unique(),
        hts_chapters=pl.col("chapter").n_unique(),
        value_cents=pl.col("cents").sum(),
        duty_cents=pl.col("duty").sum(),
        first_entry_date=pl.col("entry_date").min(),
        last_entry_date=pl.col("entry_date").max(),
    )
    per_center = (df.filter(pl.col("center").is_not_null())
                  .group_by("importer_id", "center")
                  .agg(center_lines=pl.len(), center_value_cents=pl.col("cents").sum()))
    winner = (per_center.sort(["importer_id", "center_lines", "center_value_cents", "center"],
                              descending=[False, True, True, False])
              .group_by("importer_id", maintain_order=True).first())
    out = (accounts.join(winner, on="importer_id", how="left").sort("importer_id")
           .select(COLUMNS).collect())
    return out.to_arrow()


def duckdb_accounts(lines: pa.Table, centers: CenterMap) -> pa.Table:
    """Per-account aggregates with duckdb SQL."""
    con = duckdb.connect()
    con.register("lines", lines)
    con.register("lookup", center_lookup(centers))
    query = """
    WITH l AS (
        SELECT *,
            round(entered_value * 100)::BIGINT AS cents,
            replace(replace(hts_code, '.', ''), ' ', '') AS hts,
            lpad(port_code, 4, '0') AS port,
            upper(country_of_origin) AS country,
            (entry_date - DATE '1970-01-01')::INTEGER AS day
        FROM lines
    ), c AS (
        SELECT l.*, round(cents::DOUBLE * duty_rate / 100)::BIGINT AS duty, k.center
        FROM l LEFT JOIN lookup k
          ON k.heading = substr(l.hts, 1, 4)::INTEGER AND l.day >= k.start_day AND l.day < k.end_day
    ), accounts AS (
        SELECT importer_id, count(*) AS lines, count(DISTINCT entry_number) AS entries,
            count(DISTINCT port) AS ports, count(DISTINCT country) AS countries,
            count(DISTINCT manufacturer_id) AS manufacturers,
            count(DISTINCT substr(hts, 1, 2)) AS hts_chapters,
            sum(cents)::BIGINT AS value_cents, sum(duty)::BIGINT AS duty_cents,
            min(entry_date) AS first_entry_date, max(entry_date) AS last_entry_date
        FROM c GROUP BY importer_id
    ), per_center AS (
        SELECT importer_id, center, count(*) AS center_lines, sum(cents)::BIGINT AS center_value_cents,
            row_number() OVER (PARTITION BY importer_id
                               ORDER BY count(*) DESC, sum(cents) DESC, center) AS pick
        FROM c WHERE center IS NOT NULL GROUP BY importer_id, center
    )
    SELECT a.*, p.center, p.center_lines, p.center_value_cents
    FROM accounts a LEFT JOIN per_center p ON p.importer_id = a.importer_id AND p.pick = 1
    ORDER BY a.importer_id
    """
    return con.sql(query).to_arrow_table()


def ceecore_view(result: pa.Table, centers: CenterMap) -> pa.Table:
    """ceecore's account table in the peers' shape (winning Center's lines and cents)."""
    codes = centers.codes
    lines_by = np.stack([result["lines_by_center"].combine_chunks().field(c).to_numpy() for c in codes], axis=1) \
        if result.num_rows else np.zeros((0, len(codes)), np.int64)
    cents_by = np.stack([_cents(result["value_by_center"].combine_chunks().field(c)) for c in codes], axis=1) \
        if result.num_rows else np.zeros((0, len(codes)), np.int64)
    center = result["center"].combine_chunks()
    idx = np.array([codes.index(c) if c is not None else 0 for c in center.to_pylist()], dtype=np.int64)
    rows = np.arange(result.num_rows)
    has = pc.is_valid(center)
    return pa.table({
        "importer_id": result["importer_id"].cast(pa.string()),
        **{c: result[c] for c in ("lines", "entries", "ports", "countries", "manufacturers", "hts_chapters")},
        "value_cents": _cents(result["entered_value"]),
        "duty_cents": _cents(result["duty"]),
        "first_entry_date": result["first_entry_date"],
        "last_entry_date": result["last_entry_date"],
        "center": center,
        "center_lines": pc.if_else(has, pa.array(lines_by[rows, idx]), None),
        "center_value_cents": pc.if_else(has, pa.array(cents_by[rows, idx]), None),
    })


def normalized(table: pa.Table) -> pa.Table:
    """Common types, for exact comparison across engines."""
    types = {c: pa.int64() for c in COLUMNS if c not in ("importer_id", "center", "first_entry_date",
                                                         "last_entry_date")}
    types.update(importer_id=pa.string(), center=pa.string(), first_entry_date=pa.date32(),
                 last_entry_date=pa.date32())
    return table.select(COLUMNS).cast(pa.schema([(c, types[c]) for c in COLUMNS])).combine_chunks()


def _cents(money: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Cents of a decimal(38, 2) column: the low word of each unscaled value (totals below 2**63)."""
    if isinstance(money, pa.ChunkedArray):
        money = money.combine_chunks()
    words = np.frombuffer(money.buffers()[1], np.int64).reshape(-1, 2)
    return words[money.offset:money.offset + len(money), 0].copy()
