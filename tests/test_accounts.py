"""Account consolidation: the compiled kernel against a plain-Python reference and two
independent engines (duckdb, polars), plus the algebra of the state (batching, merging,
threads, serialisation) and Center assignment.

Random data comes from the ``lines`` strategy in conftest.py (drawn with ``st.data()``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import random
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from benchmarks.peers import ceecore_view, duckdb_accounts, normalized, polars_accounts
from ceecore import CONSOLIDATION_COLUMNS, REJECT_REASONS, AccountBook, CenterMap, Override
from ceecore.centers import Center, Rule
from ceecore.synth import generate_table
from ceecore.schema import arrow_schema

# CEECORE_HYPOTHESIS_SCALE=10 runs ten times the examples (a longer hunt for bugs).
SCALE = float(os.environ.get("CEECORE_HYPOTHESIS_SCALE", "1"))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RESULT_SCHEMA = [
    ("importer_id", pa.large_string()), ("center", pa.string()), ("center_name", pa.string()),
    ("field_office", pa.string()), ("center_share", pa.float64()), ("assigned_by", pa.string()),
    ("override_note", pa.string()), ("lines", pa.int64()), ("entries", pa.int64()), ("ports", pa.int64()),
    ("countries", pa.int64()), ("manufacturers", pa.int64()), ("hts_chapters", pa.int64()),
    ("entered_value", pa.decimal128(38, 2)), ("duty", pa.decimal128(38, 2)),
    ("effective_duty_rate", pa.float64()), ("first_entry_date", pa.date32()), ("last_entry_date", pa.date32()),
]


# ----------------------------------------------------------------------- helpers


def book_of(*batches: pa.RecordBatch, threads: int = 1) -> tuple[AccountBook, np.ndarray]:
    book = AccountBook(threads=threads)
    codes = [book.update(b) for b in batches]
    return book, (np.concatenate(codes) if codes else np.zeros(0, np.uint8))


def reasons(codes: np.ndarray) -> list[str]:
    return [REJECT_REASONS[c] for c in codes]


def assert_tables_equal(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.schema.equals(expected.schema, check_metadata=True), (actual.schema, expected.schema)
    if not actual.equals(expected):
        a, e = actual.to_pylist(), expected.to_pylist()
        diff = [(x, y) for x, y in zip(a, e) if x != y]
        raise AssertionError(f"{len(a)} vs {len(e)} rows; first differing rows: {diff[:2]}")


def assert_same_book(actual: AccountBook, expected: AccountBook) -> None:
    assert_tables_equal(actual.to_arrow(), expected.to_arrow())
    for by in ("lines", "value"):
        assert_tables_equal(actual.result(by), expected.result(by))


def assert_matches_reference(result: pa.Table, expected: list[dict]) -> None:
    actual = result.to_pylist()
    assert [r["importer_id"] for r in actual] == [r["importer_id"] for r in expected]
    for got, want in zip(actual, expected):
        for column in want:
            assert got[column] == want[column], (got["importer_id"], column, got[column], want[column])
        assert set(got) == set(want)


def serialise(table: pa.Table, stream: bool = True) -> bytes:
    sink = pa.BufferOutputStream()
    opener = ipc.new_stream if stream else ipc.new_file
    with opener(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def deserialise(data: bytes, stream: bool = True) -> pa.Table:
    reader = ipc.open_stream(data) if stream else ipc.open_file(data)
    return reader.read_all()


def line(importer="IMP", entry="E1", hts="8471.30.0100", value=100.0, date=dt.date(2025, 1, 1), **kw) -> dict:
    return {"entry_number": entry, "line_number": 1, "importer_id": importer, "port_code": "2704",
            "entry_date": date, "hts_code": hts, "country_of_origin": "CN", "entered_value": value,
            "duty_paid": None, "duty_rate": 2.5, "quantity": 1.0, "gross_weight_kg": 1.0,
            "manufacturer_id": "M1", **kw}


# ----------------------------------------------------------------------- reference


@settings(max_examples=int(200 * SCALE), **SETTINGS)
@given(data=st.data())
def test_kernel_matches_reference(data, lines, centers):
    drawn = data.draw(lines(max_rows=60, dirty=True), label="lines")
    threads = data.draw(st.integers(1, 3), label="threads")
    importers = sorted({r.get("importer_id") for r in drawn.rows if isinstance(r.get("importer_id"), str)})
    overridden = data.draw(st.lists(st.sampled_from(importers), unique=True), label="overridden") \
        if importers else []
    overrides = {i: Override(data.draw(st.sampled_from(centers.codes)), f"note {i}") for i in overridden}

    book, codes = book_of(drawn.batch, threads=threads)

    assert reasons(codes) == reference.check_lines(drawn.rows)
    folded = reference.fold(drawn.rows, centers)
    assert len(book) == len(folded)
    assert book.to_arrow().to_pylist() == reference.state(drawn.rows, centers, folded)
    for by in ("lines", "value"):
        assert_matches_reference(book.result(by), reference.accounts_of(folded, centers, by))
        assert_matches_reference(book.result(by, overrides), reference.accounts_of(folded, centers, by, overrides))


def test_kernel_matches_reference_on_sample_data(centers):
    """Thousands of distinct keys: every hash table grows several times."""
    table = generate_table(lines=30_000, accounts=300, seed=11)
    rows = table.to_pylist()
    book, codes = book_of(*table.to_batches(max_chunksize=7_000), threads=2)
    assert not codes.any()
    assert book.to_arrow().to_pylist() == reference.state(rows, centers)
    for by in ("lines", "value"):
        assert_matches_reference(book.result(by), reference.consolidate(rows, centers, by))


def test_each_reject_reason(bad_value, row, make_batch):
    """Every contract-breaking value of conftest.BAD (parametrized there), alone in a valid row."""
    column, value = bad_value
    rows = [row(), row(**{column: value}), row(entry_number="OTHER")]
    book, codes = book_of(make_batch(rows))
    expected = reference.check_lines(rows)
    assert reasons(codes) == expected
    assert expected == ["ok", f"missing_{column}" if value is None or value == "" else f"bad_{column}", "ok"]
    assert book.result()["lines"].to_pylist() == [2]


def test_contract_details(row, make_batch):
    rows = [
        row(duty_paid=12.345, duty_rate=25.0),              # duty_paid wins over duty_rate
        row(duty_paid=None, duty_rate=None),                # no duty at all
        row(manufacturer_id=""),                            # empty manufacturer = none
        row(port_code="101", country_of_origin="cn"),       # same port / country as below
        row(port_code="0101", country_of_origin="CN", manufacturer_id="cnacme0001"),
        row(hts_code="8471 30 01 00", entered_value=0.125),  # spaces; 12.5 cents -> 13 (away from zero)
        row(entered_value=-0.0),                            # negative zero is zero
        row(importer_id="I" * 64, entry_number="E" * 64),   # 64 bytes is the limit
    ]
    book, codes = book_of(make_batch(rows + [row(duty_paid=5.0, duty_rate=math.nan)]))
    assert reasons(codes) == ["ok"] * len(rows) + ["bad_duty_rate"]  # a rate is checked even when unused
    res = book.result()
    assert_matches_reference(res, reference.consolidate(rows))
    main = res.filter(pc.equal(res["importer_id"], row()["importer_id"])).to_pylist()[0]
    assert main["ports"] == 2 and main["countries"] == 1 and main["manufacturers"] == 2
    # 12.345 * 100 == 1234.5 in float64 -> 1235 cents; three lines at 2.5% of $100; 0.125 -> 13 cents -> 0 duty
    assert main["duty"] == Decimal("12.35") + 3 * Decimal("2.50")
    # dates beyond what Python's date can hold are rejected like any date out of 1900..2199
    far = make_batch([row()] * 3).set_column(
        4, "entry_date", pa.array([3_000_000, -800_000, 0], pa.int32()).cast(pa.date32()))
    assert reasons(book_of(far)[1]) == ["bad_entry_date", "bad_entry_date", "ok"]


@pytest.mark.parametrize("value, rate, cents", [
    (0.20, 2.5, 1),        # 20 * 2.5 / 100 == 0.5 exactly: away from zero
    (0.60, 2.5, 2),        # 1.5 -> 2
    (1.00, 2.5, 3),        # 2.5 -> 3 (not banker's 2)
    (1.50, 1 / 3, 1),      # (150 * rate) / 100 == 0.5, but 150 * (rate / 100) == 0.4999...
    (1.005, 100.0, 100),   # 1.005 * 100 == 100.49999999999999: 100 cents of value, 100 of duty
    (2.675, 0.0, 0),
])
def test_duty_from_rate_rounding(value, rate, cents):
    (acc,) = consolidate_rows([line(value=value, duty_rate=rate)])
    assert acc["duty"] == Decimal(cents).scaleb(-2)
    assert acc["entered_value"] == Decimal(reference.cents_of(value)).scaleb(-2)


# ----------------------------------------------------------------------- differential


def _peer_check(table: pa.Table, centers: CenterMap) -> None:
    mine = normalized(ceecore_view(ceecore.consolidate(table), centers))
    for peer in (duckdb_accounts, polars_accounts):
        theirs = normalized(peer(table, centers))
        assert mine.equals(theirs), (peer.__name__, mine.to_pylist()[:3], theirs.to_pylist()[:3])


@settings(max_examples=int(60 * SCALE), **SETTINGS)
@given(data=st.data())
def test_differential_duckdb_polars(data, lines, centers):
    drawn = data.draw(lines(min_rows=1, max_rows=80, peers=True, layouts=False), label="lines")
    _peer_check(drawn.table.drop_columns(["duty_paid"]), centers)


def test_differential_on_messy_sample(centers):
    """Generated lines made messy: dotted HTS, 3-digit ports, lower-case countries, 98/99, dates over 2014-03-10."""
    table = generate_table(lines=60_000, accounts=800, seed=5, start=dt.date(2014, 2, 1), end=dt.date(2014, 4, 21))
    rng = np.random.default_rng(5)
    n = table.num_rows
    hts = np.array(table["hts_code"].to_pylist(), dtype=object)
    pick = rng.random(n)
    hts = np.where(pick < 0.3, [f"{h[:4]}.{h[4:6]}.{h[6:]}" for h in hts], hts)
    specials = np.array(["9801.00.1000", "9903.88.03", "8511.10.0000", "7309.00", "8307.10.1000"], dtype=object)
    hts = np.where(pick > 0.93, specials[rng.integers(0, len(specials), n)], hts)
    ports = np.array(table["port_code"].to_pylist(), dtype=object)
    ports = np.where(rng.random(n) < 0.4, [p.lstrip("0") or "0" for p in ports], ports)
    countries = np.array(table["country_of_origin"].to_pylist(), dtype=object)
    countries = np.where(rng.random(n) < 0.3, [c.lower() for c in countries], countries)
    mfr = pa.array(table["manufacturer_id"].to_pylist(), pa.string())
    mfr = pc.if_else(pa.array(rng.random(n) < 0.1), pa.nulls(n, pa.string()), mfr)
    table = (table.set_column(table.schema.get_field_index("hts_code"), "hts_code", pa.array(hts, pa.string()))
             .set_column(table.schema.get_field_index("port_code"), "port_code", pa.array(ports, pa.string()))
             .set_column(table.schema.get_field_index("country_of_origin"), "country_of_origin",
                         pa.array(countries, pa.string()))
             .set_column(table.schema.get_field_index("manufacturer_id"), "manufacturer_id", mfr))
    _peer_check(table.drop_columns(["duty_paid"]), centers)  # the peers derive duty from the rate


# ----------------------------------------------------------------------- invariance


@settings(max_examples=int(50 * SCALE), **SETTINGS)
@given(data=st.data())
def test_any_batching_gives_the_same_book(data, lines, splits, make_batch, layouts):
    drawn = data.draw(lines(max_rows=50, dirty=True), label="lines")
    parts = data.draw(splits(drawn.batch.num_rows, max_parts=6), label="parts")
    threads = data.draw(st.integers(1, 3), label="threads")
    whole, whole_codes = book_of(drawn.batch, threads=threads)
    split, split_codes = book_of(*(drawn.batch.slice(a, b - a) for a, b in parts), threads=threads)
    np.testing.assert_array_equal(split_codes, whole_codes)
    assert_same_book(split, whole)
    # the same split, each part in its own string layouts (slices of arrays vs fresh arrays)
    names = tuple(drawn.batch.schema.names)
    relaid = [make_batch(drawn.rows[a:b], {c: data.draw(st.sampled_from(layouts)) for c in names}, names)
              for a, b in parts]
    book, codes = book_of(*relaid, threads=threads)
    np.testing.assert_array_equal(codes, whole_codes)
    assert_same_book(book, whole)


def test_concurrent_updates_are_serialised():
    from concurrent.futures import ThreadPoolExecutor
    batch = generate_table(lines=20_000, accounts=300, seed=13).combine_chunks().to_batches()[0]
    parts = [batch.slice(k, 1_000) for k in range(0, batch.num_rows, 1_000)]
    expected, _ = book_of(batch, threads=2)
    shared = AccountBook(threads=2)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(shared.update, parts))
    assert not np.concatenate(codes).any()
    assert_same_book(shared, expected)


@settings(max_examples=int(50 * SCALE), **SETTINGS)
@given(data=st.data())
def test_any_merge_tree_gives_the_same_book(data, lines, splits):
    drawn = data.draw(lines(max_rows=50, dirty=True), label="lines")
    parts = data.draw(splits(drawn.batch.num_rows, max_parts=6), label="parts")
    whole, _ = book_of(drawn.batch, threads=1)
    books = [book_of(drawn.batch.slice(a, b - a), threads=data.draw(st.integers(1, 3)))[0] for a, b in parts]
    books += [AccountBook(threads=2)] * data.draw(st.integers(0, 1), label="extra empty book")
    while len(books) > 1:  # a random merge tree: merge any book into any other
        i, j = data.draw(st.lists(st.integers(0, len(books) - 1), min_size=2, max_size=2, unique=True))
        books[i].merge(books[j])
        del books[j]
    assert_same_book(books[0], whole)


@settings(max_examples=int(40 * SCALE), **SETTINGS)
@given(data=st.data())
def test_thread_count_does_not_matter(data, lines):
    drawn = data.draw(lines(max_rows=60, dirty=True), label="lines")
    books = [book_of(drawn.batch, threads=t)[0] for t in (1, 2, 3, 7)]
    for book in books[1:]:
        assert_same_book(book, books[0])


def test_invariance_on_sample_data():
    """Enough accounts and keys that every shard's tables and account arrays grow."""
    table = generate_table(lines=60_000, accounts=4_000, seed=2)
    batch = table.combine_chunks().to_batches()[0]
    whole, _ = book_of(batch, threads=1)
    for threads in (2, 3):
        assert_same_book(book_of(batch, threads=threads)[0], whole)
    rng = random.Random(2)
    cut = sorted(rng.sample(range(batch.num_rows), 5))
    bounds = [0, *cut, batch.num_rows]
    parts = [book_of(batch.slice(a, b - a), threads=rng.choice([1, 2, 3]))[0] for a, b in zip(bounds, bounds[1:])]
    rng.shuffle(parts)
    tree = [AccountBook.from_arrow(p.to_arrow(), threads=2) if k % 2 else p for k, p in enumerate(parts)]
    while len(tree) > 1:
        i, j = rng.sample(range(len(tree)), 2)
        tree[i].merge(tree[j])
        del tree[j]
    assert_same_book(tree[0], whole)


# ----------------------------------------------------------------------- serialisation


@settings(max_examples=int(40 * SCALE), **SETTINGS)
@given(data=st.data())
def test_state_round_trips(data, lines, splits):
    drawn = data.draw(lines(max_rows=50, dirty=True), label="lines")
    b = data.draw(st.integers(0, drawn.batch.num_rows), label="first part ends")
    c = data.draw(st.integers(b, drawn.batch.num_rows), label="second part ends")
    first, later, other = (drawn.batch.slice(0, b), drawn.batch.slice(b, c - b), drawn.batch.slice(c))
    threads = data.draw(st.integers(1, 3), label="threads")

    original, _ = book_of(first, threads=threads)
    state = original.to_arrow()
    copies = [
        AccountBook.from_arrow(state, threads=data.draw(st.integers(1, 3))),
        AccountBook.from_arrow(deserialise(serialise(state))),
        AccountBook.from_arrow(deserialise(serialise(state, stream=False), stream=False), threads=2),
    ]
    for copy in copies:
        assert_same_book(copy, original)

    # the copies keep working like the original: more batches, then merges
    for book in [original, *copies]:
        book.update(later)
        book.merge(book_of(other, threads=2)[0])
    whole, _ = book_of(drawn.batch, threads=1)
    for book in [original, *copies]:
        assert_same_book(book, whole)
    # and the state of a merged book round-trips too
    assert_same_book(AccountBook.from_arrow(deserialise(serialise(whole.to_arrow()))), whole)


def test_empty_book():
    empty = AccountBook(threads=2)
    result = empty.result()
    assert result.num_rows == 0
    assert [(f.name, f.type) for f in result.schema][:len(RESULT_SCHEMA)] == RESULT_SCHEMA
    assert len(empty) == 0
    assert_same_book(AccountBook.from_arrow(deserialise(serialise(empty.to_arrow()))), empty)
    batch = generate_table(lines=100, accounts=5).to_batches()[0]
    filled, _ = book_of(batch)
    before = filled.to_arrow()
    filled.merge(empty)
    assert len(filled.update(batch.slice(0, 0))) == 0
    assert_tables_equal(filled.to_arrow(), before)
    empty.merge(filled)
    assert_same_book(empty, filled)


def test_a_cleared_book_is_empty_and_folds_anew():
    """clear() lets the state go (a job that took its accounts): the book is then as new."""
    batch = generate_table(lines=2_000, accounts=50).to_batches()[0]
    book, _ = book_of(batch)
    assert len(book) > 0
    book.clear()
    assert len(book) == 0 and book.result().num_rows == 0
    book.update(batch)
    assert_same_book(book, book_of(batch)[0])


def test_result_schema(centers):
    result = ceecore.consolidate(generate_table(lines=2_000, accounts=30))
    assert [(f.name, f.type) for f in result.schema][:len(RESULT_SCHEMA)] == RESULT_SCHEMA
    assert result.column_names[len(RESULT_SCHEMA):] == ["lines_by_center", "value_by_center"]
    assert result.schema.field("lines_by_center").type == pa.struct([(c, pa.int64()) for c in centers.codes])
    assert result.schema.field("value_by_center").type == pa.struct(
        [(c, pa.decimal128(38, 2)) for c in centers.codes])
    result.validate(full=True)
    ids = result["importer_id"].to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_custom_center_map_matches_reference():
    small = CenterMap(
        [Center("020", "Twenty", "Here"), Center("011", "Eleven", "There")],
        [Rule("chapter", "84", "020"), Rule("chapter", "85", "011"), Rule("heading", "8471", "011"),
         Rule("heading", "8501", None, effective_from=dt.date(2025, 3, 1)), Rule("chapter", "87", "020")],
    )
    table = generate_table(lines=8_000, accounts=60, seed=21)
    rows = table.to_pylist()
    book = AccountBook(small, threads=2)
    assert not book.update(table).any()
    assert book.to_arrow().schema.metadata[b"ceecore.centers"] == b"011,020"
    for by in ("lines", "value"):
        result = book.result(by)
        assert result.schema.field("lines_by_center").type.names == ["011", "020"]
        assert_matches_reference(result, reference.consolidate(rows, small, by))
    assert_same_book(AccountBook.from_arrow(book.to_arrow(), centers=small), book)


def test_update_takes_tables_streams_and_other_producers():
    table = generate_table(lines=3_000, accounts=40, seed=8)
    expected, _ = book_of(*table.to_batches(max_chunksize=500), threads=2)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=700))
    for source in (chunked, pa.RecordBatchReader.from_batches(chunked.schema, chunked.to_batches())):
        book = AccountBook(threads=2)
        assert len(book.update(source)) == table.num_rows
        assert_same_book(book, expected)
    polars = pytest.importorskip("polars")
    book = AccountBook(threads=3)
    assert not book.update(polars.from_arrow(table)).any()
    assert_same_book(book, expected)


def test_consolidate_matches_book():
    table = generate_table(lines=5_000, accounts=80, seed=9)
    book, _ = book_of(*table.to_batches(max_chunksize=1_000), threads=2)
    overrides = {table["importer_id"][0].as_py(): Override("001", "x")}
    assert_tables_equal(ceecore.consolidate(table, assign_by="value", overrides=overrides),
                        book.result("value", overrides))
    assert_tables_equal(ceecore.consolidate(table.to_batches(max_chunksize=333), threads=3), book.result())


# ----------------------------------------------------------------------- from_arrow checks


@pytest.fixture(scope="module")
def state() -> pa.Table:
    book, _ = book_of(generate_table(lines=500, accounts=10, seed=4).to_batches()[0])
    return book.to_arrow()


def test_from_arrow_rejects_missing_metadata(state):
    with pytest.raises(ValueError, match="not a ceecore account state"):
        AccountBook.from_arrow(state.replace_schema_metadata(None))
    meta = dict(state.schema.metadata)
    meta[b"ceecore.state"] = b"ceecore.accounts/999"
    with pytest.raises(ValueError, match="not a ceecore account state"):
        AccountBook.from_arrow(state.replace_schema_metadata(meta))


def test_from_arrow_rejects_lines_table():
    with pytest.raises(ValueError):
        AccountBook.from_arrow(generate_table(lines=10, accounts=2))


def test_from_arrow_rejects_other_centers(state, centers):
    meta = dict(state.schema.metadata)
    for codes in (b"001,002,003", b"", b",".join(c.encode() for c in reversed(centers.codes))):
        meta[b"ceecore.centers"] = codes
        with pytest.raises(ValueError, match="Centers"):
            AccountBook.from_arrow(state.replace_schema_metadata(meta))
    meta.pop(b"ceecore.centers")
    with pytest.raises(ValueError, match="Centers"):
        AccountBook.from_arrow(state.replace_schema_metadata(meta))
    # a book with a different Center set refuses the state, and the state merges nowhere else
    small = CenterMap([Center("001", "A", "X"), Center("002", "B", "Y")], [Rule("chapter", "84", "001")])
    with pytest.raises(ValueError, match="Centers"):
        AccountBook.from_arrow(state, centers=small)
    with pytest.raises(ValueError, match="different Centers"):
        AccountBook(small).merge(AccountBook.from_arrow(state))


def test_from_arrow_refuses_an_older_state(state):
    """A state of format 1 (entry numbers as text) is named as such, not read as hashes."""
    meta = {**state.schema.metadata, b"ceecore.state": b"ceecore.accounts/1"}
    with pytest.raises(ValueError, match="older ceecore"):
        AccountBook.from_arrow(state.replace_schema_metadata(meta))


def test_state_keeps_no_entry_or_manufacturer_text(state):
    """The state holds (importer, key) pair hashes, as many as the accounts' distinct keys."""
    book = AccountBook.from_arrow(state)
    counts = book.result().select(["entries", "manufacturers"]).to_pydict()
    assert [len(v) for v in state.column("entry_hashes").to_pylist()] == counts["entries"]
    assert [len(v) for v in state.column("manufacturer_hashes").to_pylist()] == counts["manufacturers"]
    assert all(h % 2 for v in state.column("manufacturer_hashes").to_pylist() for h in v)


@pytest.mark.parametrize("column", ["importer_id", "lines", "entered_value", "duty", "first_date",
                                    "last_date", "center_lines", "center_value", "hts_chapters",
                                    "countries", "ports", "entry_hashes", "manufacturer_hashes"])
def test_from_arrow_rejects_missing_column(state, column):
    with pytest.raises(ValueError, match="expected columns"):
        AccountBook.from_arrow(state.drop_columns([column]))


@pytest.mark.parametrize("column, value", [
    ("center_lines", [1, 2, 3]),             # wrong number of Centers
    ("ports", ["12345"]), ("ports", ["27a"]),  # not four digits
    ("countries", ["cn"]), ("countries", ["CHN"]),
    ("hts_chapters", [100]), ("hts_chapters", [-1]),
    ("manufacturer_hashes", [2]),             # even: a manufacturer's pair hash is odd
    ("first_date", "yesterday"),             # text that is no date
])
def test_from_arrow_rejects_bad_values(state, column, value):
    rows = state.to_pylist()
    if column == "first_date":
        rows = [{**r, "first_date": str(r["first_date"])} for r in rows]
    rows[0][column] = value
    schema = state.schema
    if column in ("center_lines", "first_date"):
        schema = schema.set(schema.get_field_index(column),
                            pa.field(column, pa.list_(pa.int64()) if column == "center_lines" else pa.string()))
    with pytest.raises(ValueError):
        AccountBook.from_arrow(pa.Table.from_pylist(rows, schema=schema))


@pytest.mark.parametrize("column, value", [
    ("lines", None), ("entered_value", None), ("duty", None), ("first_date", None), ("last_date", None),
    ("ports", ["0101", None]), ("ports", None), ("entry_hashes", None), ("center_lines", [None] * 10),
])
def test_from_arrow_rejects_nulls(state, column, value):
    """Nulls are refused (unchecked, they became lines == -2**63 and a phantom port 0000)."""
    rows = state.to_pylist()
    rows[0][column] = value
    with pytest.raises(ValueError):
        AccountBook.from_arrow(pa.Table.from_pylist(rows, schema=state.schema))


# ----------------------------------------------------------------------- assignment


LINE_SCHEMA = arrow_schema(CONSOLIDATION_COLUMNS)


def consolidate_rows(rows, **kw) -> list[dict]:
    book = AccountBook(threads=1)
    assert not book.update(pa.RecordBatch.from_pylist(rows, schema=LINE_SCHEMA)).any()
    return book.result(**kw).to_pylist()


def test_exact_tie_goes_to_lowest_code():
    # 2 lines of 010 (chapter 84) and 2 lines of 007 (chapter 85), equal value
    rows = [line(hts="8471.30.0100", value=50.0), line(hts="8471.30.0100", value=50.0),
            line(hts="8501.10.2000", value=25.0), line(hts="8501.10.2000", value=75.0)]
    for by in ("lines", "value"):
        for order in itertools.permutations(range(4)):
            (acc,) = consolidate_rows([rows[k] for k in order], assign_by=by)
            assert (acc["center"], acc["center_share"], acc["assigned_by"]) == ("007", 0.5, "rule")
    (acc,) = consolidate_rows(rows)
    assert (acc["center_name"], acc["field_office"]) == (CenterMap.default().center("007").name,
                                                        CenterMap.default().center("007").field_office)


def test_tie_on_lines_goes_to_more_value_and_back():
    rows = [line(hts="8471.30.0100", value=60.0), line(hts="8471.30.0100", value=60.0),
            line(hts="8501.10.2000", value=50.0), line(hts="8501.10.2000", value=50.0)]
    (acc,) = consolidate_rows(rows, assign_by="lines")
    assert (acc["center"], acc["center_share"]) == ("010", 0.5)
    # a tie on value goes to more lines
    rows = [line(hts="8471.30.0100", value=100.0), line(hts="8501.10.2000", value=40.0),
            line(hts="8501.10.2000", value=60.0)]
    (acc,) = consolidate_rows(rows, assign_by="value")
    assert (acc["center"], acc["center_share"]) == ("007", 0.5)


def test_assign_by_value_differs_from_lines():
    rows = [line(hts="8501.10.2000", value=10.0, entry=f"E{k}") for k in range(3)]
    rows.append(line(hts="8471.30.0100", value=1000.0))
    (by_lines,) = consolidate_rows(rows, assign_by="lines")
    (by_value,) = consolidate_rows(rows, assign_by="value")
    assert (by_lines["center"], by_lines["center_share"]) == ("007", 0.75)
    assert (by_value["center"], by_value["center_share"]) == ("010", 1000.0 / 1030.0)
    # everything but the assignment is the same
    keep = set(by_lines) - {"center", "center_name", "field_office", "center_share"}
    assert {k: by_lines[k] for k in keep} == {k: by_value[k] for k in keep}
    with pytest.raises(ValueError, match="assign_by"):
        consolidate_rows(rows, assign_by="weight")


def test_overrides_win_and_are_marked():
    rows = [line("A", hts="8501.10.2000"), line("A", hts="8501.10.2000", entry="E2"),
            line("B", hts="8471.30.0100"), line("C", hts="9801.00.1000")]
    overrides = {"A": Override("001", "appeal 2024-07"), "C": Override("003", "ruling N12345"),
                 "NOT-IN-BOOK": Override("002", "ignored")}
    a, b, c = consolidate_rows(rows, overrides=overrides)
    assert (a["center"], a["assigned_by"], a["override_note"], a["center_share"]) == \
        ("001", "override", "appeal 2024-07", 0.0)
    assert a["center_name"] == CenterMap.default().center("001").name
    assert (b["center"], b["assigned_by"], b["override_note"]) == ("010", "rule", None)
    # an override also assigns an account that has no Center of its own
    assert (c["center"], c["assigned_by"], c["override_note"], c["center_share"]) == \
        ("003", "override", "ruling N12345", None)
    with pytest.raises(ValueError, match="unknown center"):
        consolidate_rows(rows, overrides={"A": Override("999", "bad")})


def test_chapters_98_99_only_have_no_center():
    rows = [line(hts="9801.00.1000"), line(hts="9903.88.03", entry="E2", value=5.0)]
    (acc,) = consolidate_rows(rows)
    assert acc["center"] is acc["center_name"] is acc["field_office"] is None
    assert acc["center_share"] is acc["assigned_by"] is acc["override_note"] is None
    assert (acc["lines"], acc["entries"], acc["hts_chapters"]) == (2, 2, 2)
    assert acc["entered_value"] == Decimal("105.00")
    assert set(acc["lines_by_center"].values()) == {0}
    assert set(acc["value_by_center"].values()) == {Decimal("0")}
    # 98/99 lines count for the account but not for its Center share
    (acc,) = consolidate_rows(rows + [line(hts="8471.30.0100", entry="E3")])
    assert (acc["center"], acc["center_share"], acc["lines"]) == ("010", 1.0, 3)


def test_center_epochs():
    # heading 8511 moved from 010 (Machinery) to 003 (Automotive) on 2014-03-10
    before = line("A", hts="8511.10.0000", date=dt.date(2014, 3, 9))
    after = line("B", hts="8511.10.0000", date=dt.date(2014, 3, 10))
    a, b = consolidate_rows([before, after])
    assert (a["center"], b["center"]) == ("010", "003")


def test_effective_duty_rate_and_zero_value():
    rows = [line("A", value=200.0, duty_rate=2.5), line("A", value=0.0, entry="E2", duty_paid=3.0),
            line("Z", value=0.0, duty_paid=1.0)]
    a, z = consolidate_rows(rows)
    assert (a["entered_value"], a["duty"], a["effective_duty_rate"]) == (Decimal("200.00"), Decimal("8.00"), 4.0)
    assert (z["entered_value"], z["duty"], z["effective_duty_rate"]) == (Decimal("0.00"), Decimal("1.00"), None)


def test_value_assignment_of_zero_value_account():
    """With assign_by="value", an account whose lines with a Center all have zero value
    still gets a Center: all Centers tie at $0, and ties go to the Center with more lines
    (only accounts with no line that has a Center get none). Its share is null (0 / 0)."""
    rows = [line(hts="8471.30.0100", value=0.0), line(hts="8471.30.0100", value=0.0, entry="E2"),
            line(hts="8501.10.2000", value=0.0, entry="E3")]
    (by_lines,) = consolidate_rows(rows, assign_by="lines")
    assert (by_lines["center"], by_lines["assigned_by"]) == ("010", "rule")
    (by_value,) = consolidate_rows(rows, assign_by="value")
    assert (by_value["center"], by_value["assigned_by"], by_value["center_share"]) == ("010", "rule", None)



# ----------------------------------------------------------------------- regressions


@pytest.mark.parametrize("n_lines", [10_001, 92_234])
def test_huge_totals_are_exact_or_refused(n_lines):
    """Every line is within the contract (at most $1e12); so is any account total: cents are
    summed in 128 bits and written as decimal128(38, 2). (Once int64 sums wrapped around above
    2**63 - 1 cents and decimal128(18, 2) could not hold 10**18 cents.)"""
    batch = pa.RecordBatch.from_pylist([line(value=1e12)], schema=LINE_SCHEMA)
    batch = pa.Table.from_batches([batch] * n_lines).combine_chunks().to_batches()[0]
    book = AccountBook(threads=1)
    try:
        assert not book.update(batch).any()
        result = book.result()
    except (OverflowError, ValueError, pa.ArrowInvalid):
        return  # refusing is fine
    result.validate(full=True)
    assert result["entered_value"][0].as_py() == Decimal(n_lines) * Decimal(10**12)


def test_books_with_different_hts_maps_do_not_mix(tmp_path):
    """Same Center codes, another HTS -> Center map: merging or loading the state is refused."""
    lines = generate_table(lines=2_000, accounts=40, seed=2)
    default = AccountBook()
    default.update(lines)
    user_map = tmp_path / "map.csv"
    user_map.write_text("level,prefix,center,effective_from,effective_to,source\nchapter,84,007,,,test\n")
    other = AccountBook(CenterMap.from_files(mapping=user_map))
    other.update(lines)
    with pytest.raises(ValueError, match="HTS -> Center map"):
        default.merge(other)
    with pytest.raises(ValueError, match="HTS -> Center map"):
        AccountBook.from_arrow(other.to_arrow())


@pytest.mark.parametrize("column, value", [("lines", 0), ("lines", -3), ("entered_value", Decimal("-1.00")),
                                           ("center_lines", [-1] + [0] * 9)])
def test_from_arrow_rejects_negative_counts_and_money(state, column, value):
    rows = state.to_pylist()
    rows[0][column] = value
    with pytest.raises(ValueError, match="below"):
        AccountBook.from_arrow(pa.Table.from_pylist(rows, schema=state.schema))


def test_one_huge_batch_equals_the_same_lines_in_small_batches():
    lines = generate_table(lines=600_000, accounts=3_000, seed=4).combine_chunks()
    whole, small = AccountBook(), AccountBook()
    codes = whole.update(lines.to_batches()[0])
    assert len(codes) == lines.num_rows and not codes.any()
    for batch in lines.to_batches(max_chunksize=50_000):
        small.update(batch)
    assert whole.to_arrow().equals(small.to_arrow())


def _consolidate_part(part: bytes) -> bytes:
    """Worker: lines (Arrow IPC bytes) in, account state (Arrow IPC bytes) out."""
    book = AccountBook(threads=1)
    book.update(ipc.open_stream(part).read_all())
    sink = pa.BufferOutputStream()
    state = book.to_arrow()
    with ipc.new_stream(sink, state.schema) as writer:
        writer.write_table(state)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("processes", [2, 3])
def test_states_from_several_processes_merge_to_the_single_process_book(processes):
    """Process count does not matter: parts consolidated in other processes merge exactly."""
    import concurrent.futures
    import multiprocessing

    lines = generate_table(lines=60_000, accounts=500, seed=9)
    cuts = np.linspace(0, lines.num_rows, processes + 1).astype(int)
    parts = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, lines.schema) as writer:
            writer.write_table(lines.slice(start, stop - start))
        parts.append(sink.getvalue().to_pybytes())
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        states = list(pool.map(_consolidate_part, parts))
    merged = AccountBook(threads=2)
    for state in reversed(states):
        merged.merge(AccountBook.from_arrow(ipc.open_stream(state).read_all()))
    whole = AccountBook(threads=2)
    whole.update(lines)
    assert merged.to_arrow().equals(whole.to_arrow())
    assert merged.result().equals(whole.result())
