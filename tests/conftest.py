"""Shared test data for the account tests: hypothesis strategies of small entry-line tables.

The strategies are handed out by session fixtures (``lines``), to be drawn inside a
test with ``st.data()``, so that no test module imports this conftest.

The tables are small but realistic in their repeats: a handful of importers, entries,
ports and manufacturers reused across lines; null and empty manufacturers; HTS codes
with dots, spaces or neither, including chapters 98/99 (no Center), unmapped chapters
(00, 77) and headings whose Center changed on 2014-03-10 (79 FR 13322) with dates on
either side of it; lower- and mixed-case countries; 1-3 digit ports; money values that
sit exactly on rounding ties; duty_paid often null so that duty_rate is used; optional
columns sometimes absent; string columns in every Arrow layout the kernel reads
(string, large_string, string_view over several buffers, dictionaries with null
indices or null values).
With ``dirty=True`` a few values in a few rows break the data contract.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import strategies as st

from ceecore.centers import CenterMap

# ----------------------------------------------------------------------- value pools

IMPORTERS = ["10-1234567AB", "10-1234567ab", "27-0000001CD", "ACME", "Zürich-01", "I" * 64]
ENTRIES = ["ABC12345678", "ABC12345679", "XYZ00000001", "E1", "e1", "Ω-77", "ABC12345678-0001"]
PORTS = ["101", "0101", "2704", "1", "0001", "0", "5301", "9999", "27"]
COUNTRIES = ["CN", "cn", "Cn", "MX", "mx", "DE", "VN", "zz"]
MANUFACTURERS = [None, None, "", "CNACME0001", "cnacme0001", "MXFOO0002", "DEBAR0003", "CNACMEWIDGETS0001"]
HTS = [
    "8511.10.0000", "8511100000", "851110", "8511 10 00",  # 010 before 2014-03-10, 003 from it
    "7309.00.0030", "7415.10", "8307.10.1000",             # 005 <-> 009 on 2014-03-10
    "7013.99.5000",                                        # heading 008 before, chapter 70 (009) after
    "9018.90.8000", "9027.80",                             # heading of 001 inside chapter 90 (007)
    "9801.00.1000", "9903.88.03", "99038803",              # chapters 98/99: no Center
    "0000.00.00", "7700.00",                               # unmapped chapters: no Center
    "3004.90.9200", "6109.10.0012", "8471.30.0100", "8703.23.01.90", "0101.21.0000", "2204.21",
]
DATES = [dt.date(2014, 3, 8), dt.date(2014, 3, 9), dt.date(2014, 3, 10), dt.date(2014, 3, 11),
         dt.date(2025, 1, 1), dt.date(2025, 6, 30), dt.date(1969, 12, 31), dt.date(2000, 2, 29),
         dt.date(1900, 1, 1), dt.date(2199, 12, 31)]  # the first and last day a line may have
# x * 100 lands on or next to a .5 tie in float64 for many of these.
TRICKY_MONEY = [0.0, 0.005, 0.015, 0.125, 0.145, 0.285, 1.005, 2.675, 1.115, 0.01, 12345.675,
                999999999999.99, 1e12, 0.49999999999999994]
RATES = [0.0, 2.5, 3.9, 6.5, 16.0, 25.0, 37.5, 10000.0, 1.0 / 3.0]

BAD = {
    "entry_number": [None, "", "A" * 65, "E\n1", "E\x7f"],
    "line_number": [None, 0, -3],
    "importer_id": [None, "", "I" * 65, "\x00ACME", "ü" * 33],
    "port_code": [None, "", "12345", "12a", " 101", "-1", "\u0661\u0660\u0661", "10.1"],
    "entry_date": [None, dt.date(1899, 12, 31), dt.date(2200, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)],
    "hts_code": [None, "", "85", "8511", "85111", "85111000001", "8511-10-00", "ABCD.EF", "....."],
    "country_of_origin": [None, "", "C", "CHN", "C1", "é", "ÉÉ", "1A"],
    "entered_value": [None, -0.01, math.nan, math.inf, -math.inf, 1e12 + 1, 2e12],
    "duty_paid": [-0.01, math.nan, math.inf, 3e12],
    "duty_rate": [-0.5, math.nan, 10000.5, math.inf],
    "quantity": [-1.0, math.nan, -math.inf],
    "gross_weight_kg": [-0.1, math.nan, math.inf],
    "manufacturer_id": ["\x7f", "M" * 65, "tab\there"],
}

STRING_COLUMNS = ("entry_number", "importer_id", "port_code", "hts_code", "country_of_origin", "manufacturer_id")
OPTIONAL_COLUMNS = ("duty_paid", "duty_rate", "quantity", "gross_weight_kg", "manufacturer_id")
COLUMN_TYPES = {
    "entry_number": pa.string(), "line_number": pa.int64(), "importer_id": pa.string(),
    "port_code": pa.string(), "entry_date": pa.date32(), "hts_code": pa.string(),
    "country_of_origin": pa.string(), "entered_value": pa.float64(), "duty_paid": pa.float64(),
    "duty_rate": pa.float64(), "quantity": pa.float64(), "gross_weight_kg": pa.float64(),
    "manufacturer_id": pa.string(),
}
LAYOUTS = ("string", "large_string", "string_view", "dictionary", "dictionary8")


# ----------------------------------------------------------------------- strategies

money = st.one_of(
    st.sampled_from(TRICKY_MONEY),
    st.sampled_from([10.0, 25.0, 100.0]),                           # repeats, so that Centers tie exactly
    st.integers(0, 10**9).map(lambda c: c / 100),                  # whole cents
    st.floats(0, 1e7, allow_nan=False, allow_infinity=False),        # anything in range
)
rates = st.one_of(st.sampled_from(RATES), st.floats(0, 100, allow_nan=False))
measures = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 12.5]), st.floats(0, 1e6))


def _field(name: str, valid: st.SearchStrategy, dirty: bool) -> st.SearchStrategy:
    if not dirty:
        return valid
    # about one value in 45 breaks the contract (about a quarter of the rows); shrinks to valid
    return st.integers(0, 44).flatmap(lambda k: st.sampled_from(BAD[name]) if k == 44 else valid)


def row_strategy(dirty: bool = False, peers: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """One entry line as a dict. ``peers``: only what the SQL/dataframe peers model
    (no duty_paid, duty_rate always set, no empty manufacturer)."""
    manufacturers = [m for m in MANUFACTURERS if m != ""] if peers else MANUFACTURERS
    fields = {
        "entry_number": st.sampled_from(ENTRIES),
        "line_number": st.integers(1, 5),
        "importer_id": st.sampled_from(IMPORTERS),
        "port_code": st.sampled_from(PORTS),
        "entry_date": st.sampled_from(DATES),
        "hts_code": st.sampled_from(HTS),
        "country_of_origin": st.sampled_from(COUNTRIES),
        "entered_value": money,
        "duty_paid": st.none() if peers else st.one_of(st.none(), st.none(), money),
        "duty_rate": rates if peers else st.one_of(st.none(), rates),
        "quantity": measures,
        "gross_weight_kg": measures,
        "manufacturer_id": st.sampled_from(manufacturers),
    }
    return st.fixed_dictionaries({k: _field(k, v, dirty) for k, v in fields.items()})


@dataclass
class Lines:
    """Drawn entry lines: the rows (for the reference) and the same rows as one batch."""

    rows: list[dict[str, Any]]
    batch: pa.RecordBatch

    @property
    def table(self) -> pa.Table:
        return pa.Table.from_batches([self.batch])


def to_array(values: list[Any], name: str, layout: str = "string") -> pa.Array:
    """``values`` as an Arrow array of column ``name``; text in the given layout.

    ``string_view`` arrays are built in two halves and concatenated, so that long
    values sit in more than one variadic data buffer. ``dictionary`` arrays hold
    their nulls as null *dictionary values* (not null indices) and use unsigned
    16-bit indices; ``dictionary8`` uses int8 indices with null indices.
    """
    typ = COLUMN_TYPES[name]
    if typ != pa.string() or layout == "string":
        return pa.array(values, typ)
    if layout == "large_string":
        return pa.array(values, pa.large_string())
    if layout == "string_view":
        half = len(values) // 2
        return pa.concat_arrays([pa.array(values[:half], pa.string_view()),
                                 pa.array(values[half:], pa.string_view())])
    if layout == "dictionary8":
        return pa.array(values, pa.dictionary(pa.int8(), pa.string()))
    words = sorted({v for v in values if v is not None}) + [None]
    index = {v: k for k, v in enumerate(words)}
    return pa.DictionaryArray.from_arrays(pa.array([index[v] for v in values], pa.uint16()),
                                          pa.array(words, pa.large_string()))


def to_batch(rows: list[dict[str, Any]], layouts: dict[str, str] | None = None,
             columns: tuple[str, ...] | None = None) -> pa.RecordBatch:
    """The rows as one canonical record batch (``columns``: which to include)."""
    layouts = layouts or {}
    columns = columns or tuple(COLUMN_TYPES)
    arrays = [to_array([r.get(c) for r in rows], c, layouts.get(c, "string")) for c in columns]
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


@st.composite
def lines_strategy(draw, min_rows: int = 0, max_rows: int = 40, dirty: bool = False,
                   peers: bool = False, layouts: bool = True, drop_optional: bool = True) -> Lines:
    n = draw(st.integers(min_rows, max_rows), label="rows")  # uniform sizes: many repeats per table
    rows = draw(st.lists(row_strategy(dirty, peers), min_size=n, max_size=n))
    chosen = {c: draw(st.sampled_from(LAYOUTS)) for c in STRING_COLUMNS} if layouts else {}
    columns = tuple(COLUMN_TYPES)
    if drop_optional and not peers:
        dropped = draw(st.sets(st.sampled_from(OPTIONAL_COLUMNS), max_size=2))
        columns = tuple(c for c in columns if c not in dropped)
        rows = [{k: v for k, v in r.items() if k in columns} for r in rows]
    return Lines(rows, to_batch(rows, chosen, columns))


@st.composite
def cuts(draw, n: int, max_parts: int = 5) -> list[tuple[int, int]]:
    """A split of range(n) into consecutive (start, stop) parts; empty parts allowed."""
    points = sorted(draw(st.lists(st.integers(0, n), max_size=max_parts - 1)))
    bounds = [0, *points, n]
    return list(zip(bounds, bounds[1:]))


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def centers() -> CenterMap:
    return CenterMap.default()


@pytest.fixture(scope="session")
def lines():
    """``lines(min_rows=, max_rows=, dirty=, peers=, layouts=, drop_optional=)``: a strategy of Lines."""
    return lines_strategy


@pytest.fixture(scope="session")
def splits():
    """``splits(n, max_parts=)``: a strategy of consecutive (start, stop) parts of range(n)."""
    return cuts


@pytest.fixture(scope="session")
def layouts() -> tuple[str, ...]:
    """The text layouts ``make_batch`` knows (see :func:`to_array`)."""
    return LAYOUTS


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(rows, layouts=None, columns=None)``: rows as a canonical record batch."""
    return to_batch


@pytest.fixture(scope="session")
def row():
    """``row(**changes)``: one valid entry line (a dict), with ``changes`` applied."""
    base = {
        "entry_number": "ABC12345678", "line_number": 1, "importer_id": "10-1234567AB",
        "port_code": "2704", "entry_date": dt.date(2025, 1, 1), "hts_code": "8471.30.0100",
        "country_of_origin": "CN", "entered_value": 100.0, "duty_paid": None, "duty_rate": 2.5,
        "quantity": 1.0, "gross_weight_kg": 1.0, "manufacturer_id": "CNACME0001",
    }
    return lambda **changes: {**base, **changes}


def pytest_generate_tests(metafunc):
    """Tests asking for ``bad_value`` run once per (column, value) of :data:`BAD`."""
    if "bad_value" in metafunc.fixturenames:
        cases = [(column, value) for column, values in BAD.items() for value in values]
        metafunc.parametrize("bad_value", cases, ids=[f"{c}={v!r}"[:50] for c, v in cases])


def pytest_report_header(config):  # noqa: ANN001, ANN201
    """Says up front whether the real-data (KCS) tests run, and where their data is."""
    from tests.kcs import KCS_DIR, KCS_ENV, KCS_FOUND

    return f"KCS data: {KCS_DIR} ({'found' if KCS_FOUND else f'missing: the real-data tests skip; set {KCS_ENV}'})"
