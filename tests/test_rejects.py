"""Bad input: one reject reason per bad row, good rows untouched, structural problems stop.

Bad values never stop a run: each bad row gets exactly one reason (the first check it
fails, in ``REJECT_REASONS`` order), good rows in the same batch are accepted and the
accounts are exactly those of the good rows alone. Structural problems (a missing
column, an unreadable file, an uncastable type, ...) raise ``ContractError`` naming
the source and the column, and make the CLI exit with code 2.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ceecore
from ceecore import CONSOLIDATION_COLUMNS, REJECT_REASONS, ContractError
from ceecore.synth import generate_table
from ceecore.schema import arrow_schema

SCHEMA = arrow_schema(CONSOLIDATION_COLUMNS)
N_GOOD = 24
NAN, INF = float("nan"), float("inf")


def _good_rows() -> list[dict]:
    rows = generate_table(lines=N_GOOD, accounts=6, seed=5).to_pylist()
    for i, r in enumerate(rows):
        r["duty_paid"] = round(r["entered_value"] * 0.02, 2) if i % 3 == 0 else None
    return rows


GOOD = _good_rows()


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _table(rows: list[dict], text: tuple[str, ...] = ()) -> pa.Table:
    """Rows in the canonical schema; columns in ``text`` become string columns."""
    schema = SCHEMA
    rows = [dict(r) for r in rows]
    for name in text:
        schema = schema.set(schema.get_field_index(name), pa.field(name, pa.string()))
        for r in rows:
            if not isinstance(r[name], str):
                r[name] = _as_text(r[name])
    return pa.Table.from_pylist(rows, schema=schema)


def _codes(table: pa.Table) -> tuple[list[str], ceecore.AccountBook]:
    book = ceecore.AccountBook(threads=2)
    codes = np.concatenate([book.update(b) for b in table.to_batches()])
    return [REJECT_REASONS[c] for c in codes], book


def _accounts_of_good(book: ceecore.AccountBook) -> None:
    good = ceecore.AccountBook(threads=2)
    good.update(_table(GOOD).to_batches()[0])
    assert book.result().equals(good.result()), "a rejected row changed the accounts"
    assert book.to_arrow().equals(good.to_arrow())


# ----------------------------------------------------------------------------- the corpus

# (id, column overrides of one good row, expected reason, columns given as text)
CASES = [
    ("entry_number-null", {"entry_number": None}, "missing_entry_number", ()),
    ("entry_number-empty", {"entry_number": ""}, "missing_entry_number", ()),
    ("entry_number-control-char", {"entry_number": "ABC\x011234567"}, "bad_entry_number", ()),
    ("entry_number-newline", {"entry_number": "ABC1234\n567"}, "bad_entry_number", ()),
    ("entry_number-DEL", {"entry_number": "ABC\x7f1234567"}, "bad_entry_number", ()),
    ("entry_number-65-bytes", {"entry_number": "E" * 65}, "bad_entry_number", ()),
    ("entry_number-64-bytes-ok", {"entry_number": "E" * 64}, "ok", ()),
    ("line_number-null", {"line_number": None}, "missing_line_number", ()),
    ("line_number-zero", {"line_number": 0}, "bad_line_number", ()),
    ("line_number-negative", {"line_number": -2}, "bad_line_number", ()),
    ("line_number-text-fraction", {"line_number": "1.5"}, "bad_line_number", ("line_number",)),
    ("line_number-text-word", {"line_number": "one"}, "bad_line_number", ("line_number",)),
    ("importer-null", {"importer_id": None}, "missing_importer_id", ()),
    ("importer-empty", {"importer_id": ""}, "missing_importer_id", ()),
    ("importer-tab", {"importer_id": "IMP\tORTER"}, "bad_importer_id", ()),
    ("importer-65-bytes", {"importer_id": "I" * 65}, "bad_importer_id", ()),
    ("port-letters", {"port_code": "10A1"}, "bad_port_code", ()),
    ("port-5-digits", {"port_code": "12345"}, "bad_port_code", ()),
    ("port-negative", {"port_code": "-101"}, "bad_port_code", ()),
    ("port-null", {"port_code": None}, "missing_port_code", ()),
    ("port-empty", {"port_code": ""}, "missing_port_code", ()),
    ("port-3-digits-ok", {"port_code": "101"}, "ok", ()),
    ("date-null", {"entry_date": None}, "missing_entry_date", ()),
    ("date-text-month-13", {"entry_date": "2024-13-45"}, "bad_entry_date", ("entry_date",)),
    ("date-text-garbage", {"entry_date": "yesterday"}, "bad_entry_date", ("entry_date",)),
    ("date-text-blank", {"entry_date": "  "}, "missing_entry_date", ("entry_date",)),
    ("hts-letters", {"hts_code": "84713O0100"}, "bad_hts_code", ()),
    ("hts-5-digits", {"hts_code": "84713"}, "bad_hts_code", ()),
    ("hts-11-digits", {"hts_code": "84713001001"}, "bad_hts_code", ()),
    ("hts-null", {"hts_code": None}, "missing_hts_code", ()),
    ("hts-empty", {"hts_code": ""}, "missing_hts_code", ()),
    ("hts-dotted-ok", {"hts_code": "8471.30.0100"}, "ok", ()),
    ("hts-6-digits-ok", {"hts_code": "847130"}, "ok", ()),
    ("country-3-letters", {"country_of_origin": "USA"}, "bad_country_of_origin", ()),
    ("country-digits", {"country_of_origin": "12"}, "bad_country_of_origin", ()),
    ("country-1-letter", {"country_of_origin": "C"}, "bad_country_of_origin", ()),
    ("country-null", {"country_of_origin": None}, "missing_country_of_origin", ()),
    ("country-empty", {"country_of_origin": ""}, "missing_country_of_origin", ()),
    ("value-null", {"entered_value": None}, "missing_entered_value", ()),
    ("value-negative", {"entered_value": -0.01}, "bad_entered_value", ()),
    ("value-nan", {"entered_value": NAN}, "bad_entered_value", ()),
    ("value-inf", {"entered_value": INF}, "bad_entered_value", ()),
    ("value-minus-inf", {"entered_value": -INF}, "bad_entered_value", ()),
    ("value-above-1e12", {"entered_value": 1.5e12}, "bad_entered_value", ()),
    ("value-1e12-ok", {"entered_value": 1e12}, "ok", ()),
    ("value-zero-ok", {"entered_value": 0.0}, "ok", ()),
    ("value-text-12,x", {"entered_value": "12,x"}, "bad_entered_value", ("entered_value",)),
    ("value-text-nan", {"entered_value": "nan"}, "bad_entered_value", ("entered_value",)),
    ("value-text-blank", {"entered_value": ""}, "missing_entered_value", ("entered_value",)),
    ("value-text-exponent-ok", {"entered_value": " 1.25e3 "}, "ok", ("entered_value",)),
    ("duty_paid-negative", {"duty_paid": -1.0}, "bad_duty_paid", ()),
    ("duty_paid-nan", {"duty_paid": NAN}, "bad_duty_paid", ()),
    ("duty_paid-above-1e12", {"duty_paid": 2e12}, "bad_duty_paid", ()),
    ("duty_rate-nan", {"duty_paid": None, "duty_rate": NAN}, "bad_duty_rate", ()),
    ("duty_rate-negative", {"duty_paid": None, "duty_rate": -1.0}, "bad_duty_rate", ()),
    ("duty_rate-huge", {"duty_paid": None, "duty_rate": 10001.0}, "bad_duty_rate", ()),
    ("quantity-negative", {"quantity": -1.0}, "bad_quantity", ()),
    ("quantity-nan", {"quantity": NAN}, "bad_quantity", ()),
    ("gross_weight-negative", {"gross_weight_kg": -0.5}, "bad_gross_weight_kg", ()),
    ("gross_weight-inf", {"gross_weight_kg": INF}, "bad_gross_weight_kg", ()),
    ("manufacturer-control-char", {"manufacturer_id": "MFR\x00X"}, "bad_manufacturer_id", ()),
    ("manufacturer-escape", {"manufacturer_id": "MFR\x1b[0m"}, "bad_manufacturer_id", ()),
    ("manufacturer-65-bytes", {"manufacturer_id": "M" * 65}, "bad_manufacturer_id", ()),
    ("manufacturer-null-ok", {"manufacturer_id": None}, "ok", ()),
    # several problems: the first check in REJECT_REASONS order wins
    ("first-reason-wins", {"importer_id": None, "country_of_origin": "USA", "entered_value": -1.0},
     "missing_importer_id", ()),
    ("first-reason-wins-2", {"hts_code": "x", "quantity": -1.0}, "bad_hts_code", ()),
]
BAD_CASES = [c for c in CASES if c[2] != "ok"]


def test_corpus_is_broad():
    reasons = {c[2] for c in CASES}
    assert len(BAD_CASES) >= 20
    outcomes = {"bad_inspected", "bad_violation", "bad_revenue_recovered"}  # read by scoring only: test_scoring
    reader = {"malformed_csv_line"}  # found by the CSV reader, not the kernel: test_output_sets
    assert reasons - {"ok"} == set(REJECT_REASONS) - {"ok"} - outcomes - reader, "every reason has a case"


@pytest.mark.parametrize("overrides,reason,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_row_among_good_rows(overrides, reason, text):
    bad = {**GOOD[3], **overrides}
    rows = GOOD[:10] + [bad] + GOOD[10:]
    got, book = _codes(_table(rows, text))
    assert got[10] == reason
    assert got[:10] + got[11:] == ["ok"] * N_GOOD
    if reason != "ok":
        _accounts_of_good(book)


def test_whole_corpus_in_one_batch_counts():
    rows, expected = [], []
    for k, (_, overrides, reason, text) in enumerate(CASES):
        if text:
            continue
        rows.append(GOOD[k % N_GOOD])
        expected.append("ok")
        rows.append({**GOOD[k % N_GOOD], **overrides})
        expected.append(reason)
    table = _table(rows)
    got, _ = _codes(table)
    assert got == expected
    run = ceecore.run_consolidation(table)
    s = run.stats
    assert s.rows_read == len(rows) == s.accepted + s.rejected
    assert s.accepted == expected.count("ok")
    assert s.by_reason == dict(collections.Counter(r for r in expected if r != "ok"))
    assert sum(s.by_reason.values()) == s.rejected


def test_all_rows_bad():
    table = _table([{**r, "entered_value": -1.0} for r in GOOD])
    run = ceecore.run_consolidation(table)
    assert (run.stats.rows_read, run.stats.accepted, run.stats.rejected) == (N_GOOD, 0, N_GOOD)
    assert run.accounts.num_rows == 0


def test_control_chars_in_text_are_not_stripped_by_csv(tmp_path):
    """A quoted CSV cell with a tab or newline keeps it, and is rejected."""
    path = tmp_path / "ctl.csv"
    header = SCHEMA.names
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, r in enumerate(GOOD[:4]):
            r = dict(r)
            if i == 2:
                r["importer_id"] = "IMP\nORTER"
            w.writerow([_as_text(r[n]) or "" for n in header])
    run = ceecore.run_consolidation(path)
    assert run.stats.by_reason == {"bad_importer_id": 1}


# ----------------------------------------------------------------------------- CSV through the pipeline


def _write_csv(path: Path, rows: list[dict]) -> None:
    header = SCHEMA.names
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if r.get(n) is None else _as_text(r[n]) for n in header])


# row index -> (overrides as CSV text, reason)
CSV_BAD = {
    1: ({"entry_date": "2024-13-45"}, "bad_entry_date"),
    3: ({"entered_value": "12,x"}, "bad_entered_value"),
    4: ({"entry_number": ""}, "missing_entry_number"),
    7: ({"port_code": "10A1"}, "bad_port_code"),
    8: ({"hts_code": "84713001001"}, "bad_hts_code"),
    11: ({"country_of_origin": "USA"}, "bad_country_of_origin"),
    12: ({"entered_value": "-3"}, "bad_entered_value"),
    15: ({"line_number": "0"}, "bad_line_number"),
    16: ({"duty_paid": "-1", "entered_value": "5"}, "bad_duty_paid"),
    19: ({"quantity": "-2"}, "bad_quantity"),
    20: ({"gross_weight_kg": "abc"}, "bad_gross_weight_kg"),
    22: ({"entry_date": ""}, "missing_entry_date"),
}


@pytest.fixture
def mixed_csv(tmp_path):
    rows = [dict(r) for r in GOOD]
    for i, (overrides, _) in CSV_BAD.items():
        rows[i].update(overrides)
    path = tmp_path / "mixed.csv"
    _write_csv(path, rows)
    return path


def test_csv_run_counts_and_rejects_file(mixed_csv, tmp_path):
    rejects = tmp_path / "out" / "rejects.parquet"
    run = ceecore.run_consolidation(mixed_csv, rejects=rejects, threads=2)
    s = run.stats
    assert s.rows_read == N_GOOD
    assert s.accepted + s.rejected == s.rows_read
    assert s.rejected == len(CSV_BAD)
    assert s.by_reason == dict(collections.Counter(r for _, r in CSV_BAD.values()))

    table = pq.read_table(rejects)
    assert table.num_rows == s.rejected
    assert table.column_names[:3] == ["source", "row", "reason"]
    assert set(ceecore.CONSOLIDATION_COLUMNS) <= set(table.column_names)
    got = sorted(zip(table["row"].to_pylist(), table["reason"].to_pylist()))
    assert got == sorted((i, reason) for i, (_, reason) in CSV_BAD.items())
    assert set(table["source"].to_pylist()) == {str(mixed_csv)}
    by_row = {r["row"]: r for r in table.to_pylist()}
    # the canonical fields are kept as the text that was read
    assert by_row[1]["entry_date"] == "2024-13-45"
    assert by_row[3]["entered_value"] == "12,x"
    assert by_row[7]["port_code"] == "10A1"
    assert by_row[11]["importer_id"] == GOOD[11]["importer_id"]
    assert all(t == pa.large_string() for t in table.schema.types[3:])

    # the accepted rows are exactly the good ones
    good_only = [r for i, r in enumerate(GOOD) if i not in CSV_BAD]
    assert run.accounts.equals(ceecore.consolidate(_table(good_only)))


def test_rejects_file_without_rejects_is_empty(tmp_path):
    path = tmp_path / "good.csv"
    _write_csv(path, GOOD)
    rejects = tmp_path / "r.parquet"
    run = ceecore.run_consolidation(path, rejects=rejects)
    assert run.stats.rejected == 0 and run.stats.accepted == N_GOOD
    table = pq.read_table(rejects)
    assert table.num_rows == 0
    assert table.column_names[:3] == ["source", "row", "reason"]


def test_reject_row_numbers_span_batches_and_sources(tmp_path):
    """Row numbers count from 0 within each source, across its batches."""
    rows = [dict(r) for r in GOOD]
    bad_rows = [0, 5, 6, 17, 23]
    for i in bad_rows:
        rows[i]["importer_id"] = None
    pq.write_table(_table(rows), tmp_path / "a.parquet", row_group_size=5)
    _write_csv(tmp_path / "b.csv", [{**GOOD[0], "hts_code": "x"}, GOOD[1], {**GOOD[2], "hts_code": "y"}])
    rejects = tmp_path.with_name(f"{tmp_path.name}-rejects.parquet")  # (not inside the input directory)
    run = ceecore.run_consolidation(tmp_path, rejects=rejects)
    assert run.stats.rows_read == N_GOOD + 3
    assert run.stats.accepted + run.stats.rejected == run.stats.rows_read
    table = pq.read_table(rejects)
    got = sorted(zip(table["source"].to_pylist(), table["row"].to_pylist(), table["reason"].to_pylist()))
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")
    assert got == sorted([(a, i, "missing_importer_id") for i in bad_rows]
                         + [(b, 0, "bad_hts_code"), (b, 2, "bad_hts_code")])


def test_rejects_keep_renamed_source_columns(tmp_path):
    path = tmp_path / "renamed.csv"
    rows = [dict(r) for r in GOOD[:5]]
    rows[2]["port_code"] = "ABCD"
    _write_csv(path, rows)
    text = path.read_text().replace("port_code", "Port", 1)
    path.write_text(text)
    rejects = tmp_path / "r.parquet"
    mapping = ceecore.ColumnMapping.from_pairs(["Port=port_code"])
    run = ceecore.run_consolidation(path, mapping=mapping, rejects=rejects)
    assert run.stats.by_reason == {"bad_port_code": 1}
    rej = pq.read_table(rejects).to_pylist()
    assert [(r["row"], r["port_code"]) for r in rej] == [(2, "ABCD")]


# ----------------------------------------------------------------------------- structural problems


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "lines.csv"
    _write_csv(path, GOOD)
    pq.write_table(_table(GOOD).drop_columns(["hts_code"]), tmp_path / "nohts.parquet")
    with pytest.raises(ContractError) as err:
        ceecore.run_consolidation(tmp_path / "nohts.parquet")
    msg = str(err.value)
    assert str(tmp_path / "nohts.parquet") in msg and "'hts_code'" in msg and "missing" in msg
    assert err.value.column == "hts_code" and err.value.source == str(tmp_path / "nohts.parquet")
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("column", ceecore.REQUIRED)
def test_each_required_column_is_required(column):
    table = _table(GOOD).drop_columns([column])
    with pytest.raises(ContractError, match=rf"<batch>: column '{column}': required column is missing"):
        ceecore.AccountBook().update(table.to_batches()[0])


def test_missing_mapped_column_says_what_was_looked_for():
    table = _table(GOOD).drop_columns(["entered_value"])
    mapping = ceecore.ColumnMapping.from_pairs(["Item Price=entered_value"])
    with pytest.raises(ContractError, match=r"^kcs\.csv: column 'entered_value'.*looked for 'Item Price'"):
        ceecore.AccountBook().update(table.to_batches()[0], mapping, source="kcs.csv")


def test_optional_columns_may_be_missing():
    table = _table(GOOD).select(list(ceecore.REQUIRED))
    got, _ = _codes(table)
    assert got == ["ok"] * N_GOOD


def test_failure_in_a_later_source_leaves_no_rejects_file(tmp_path):
    _write_csv(tmp_path / "a.csv", [{**GOOD[0], "hts_code": "x"}] + GOOD[1:])
    (tmp_path / "b.csv").write_text("entry_number,importer_id\nA,B\n")
    rejects = tmp_path / "rejects.parquet"
    with pytest.raises(ContractError, match=r"b\.csv: column 'line_number'"):
        ceecore.run_consolidation([tmp_path / "a.csv", tmp_path / "b.csv"], rejects=rejects)
    assert not rejects.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]  # no temp file left


@pytest.mark.parametrize("content", [b"", b"this is not parquet at all", b"PAR1" + b"\x00" * 64 + b"PAR1"],
                         ids=["empty", "text", "bad-footer"])
def test_corrupt_parquet(tmp_path, content):
    path = tmp_path / "broken.parquet"
    path.write_bytes(content)
    with pytest.raises(ContractError) as err:
        ceecore.run_consolidation(path)
    assert str(path) in str(err.value) and "Parquet" in str(err.value)


def test_truncated_parquet(tmp_path):
    path = tmp_path / "cut.parquet"
    pq.write_table(_table(GOOD), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContractError, match=str(path)):
        ceecore.run_consolidation(path)


def test_malformed_csv_row_is_rejected_with_its_position(tmp_path):
    path = tmp_path / "ragged.csv"
    _write_csv(path, GOOD[:3])
    with open(path, "a") as f:
        f.write("only,three,cells\n")
    run = ceecore.run_consolidation(path, rejects=tmp_path / "r.parquet")
    assert (run.stats.rows_read, run.stats.rejected) == (4, 1)
    rejected = pq.read_table(tmp_path / "r.parquet")
    assert rejected.select(["row", "reason"]).to_pylist() == [{"row": 3, "reason": "malformed_csv_line"}]


def test_corrupt_arrow_ipc(tmp_path):
    path = tmp_path / "broken.arrow"
    path.write_bytes(b"ARROW1\x00\x00garbage" * 4)
    with pytest.raises(ContractError, match=r"broken\.arrow: cannot read"):
        ceecore.run_consolidation(path)


@pytest.mark.parametrize("column,array,kind", [
    ("entered_value", pa.array([[1, 2]] * N_GOOD, pa.list_(pa.int64())), "double"),
    ("line_number", pa.array([dt.date(2024, 1, 1)] * N_GOOD), "int64"),
    ("entry_date", pa.array([1.5] * N_GOOD), "date32"),
    ("importer_id", pa.array([1.5] * N_GOOD), "text"),
    ("hts_code", pa.array([True] * N_GOOD), "text"),
    ("quantity", pa.array([{"a": 1}] * N_GOOD), "double"),
], ids=["list-value", "date-line", "float-date", "float-importer", "bool-hts", "struct-quantity"])
def test_uncastable_column_type(column, array, kind):
    table = _table(GOOD)
    table = table.set_column(table.schema.get_field_index(column), column, array)
    with pytest.raises(ContractError) as err:
        ceecore.run_consolidation(table)
    msg = str(err.value)
    assert msg.startswith(f"<table>: column '{column}': has type")
    assert kind in msg
    assert err.value.column == column


def test_unknown_file_extension(tmp_path):
    path = tmp_path / "lines.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(ContractError, match=r"lines\.xlsx: unknown file type"):
        ceecore.run_consolidation(path)


def test_nonexistent_path(tmp_path):
    path = tmp_path / "nowhere" / "lines.parquet"
    with pytest.raises(ContractError, match=r"nowhere.*no such file or directory"):
        ceecore.run_consolidation(path)


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ContractError, match=r"directory holds no Parquet, Arrow IPC or CSV files"):
        ceecore.run_consolidation(tmp_path)


def test_not_arrow_data():
    with pytest.raises(TypeError, match="cannot read int"):
        ceecore.run_consolidation(42)


# ----------------------------------------------------------------------------- the CLI


def _cli(args):
    from click.testing import CliRunner

    from ceecore_cli.main import cli

    return CliRunner().invoke(cli, args)


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:  # older click without separate stderr
        return result.output


@pytest.mark.parametrize("case", ["missing-column", "corrupt-parquet", "uncastable", "unknown-extension",
                                  "empty-directory"])
def test_cli_exit_code_2(tmp_path, case):
    if case == "missing-column":
        path = tmp_path / "lines.csv"
        _write_csv(path, GOOD)
        path.write_text(path.read_text().replace("country_of_origin", "origin", 1))
        expected = [str(path), "'country_of_origin'", "required column is missing"]
    elif case == "corrupt-parquet":
        path = tmp_path / "bad.parquet"
        path.write_bytes(b"not parquet")
        expected = [str(path), "Parquet"]
    elif case == "uncastable":
        path = tmp_path / "list.parquet"
        table = _table(GOOD)
        table = table.set_column(table.schema.get_field_index("entered_value"), "entered_value",
                                 pa.array([[1]] * N_GOOD, pa.list_(pa.int64())))
        pq.write_table(table, path)
        expected = [str(path), "'entered_value'", "cannot be cast"]
    elif case == "unknown-extension":
        path = tmp_path / "lines.json"
        path.write_text("{}")
        expected = [str(path), "unknown file type"]
    else:
        path = tmp_path / "empty"
        path.mkdir()
        expected = [str(path), "directory holds no"]
    out = tmp_path / "accounts.parquet"
    result = _cli(["consolidate", str(path), "-o", str(out), "-q"])
    assert result.exit_code == 2, result.output
    err = _stderr(result)
    assert err.startswith("error: ")
    for part in expected:
        assert part in err
    assert not out.exists()
    assert not (tmp_path / "accounts.rejects.parquet").exists()


def test_cli_nonexistent_path(tmp_path):
    result = _cli(["consolidate", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "a.parquet"), "-q"])
    assert result.exit_code == 2
    assert "nope.csv" in result.output and "does not exist" in result.output


def test_cli_bad_mapping_option(tmp_path):
    path = tmp_path / "lines.csv"
    _write_csv(path, GOOD)
    result = _cli(["consolidate", str(path), "-o", str(tmp_path / "a.parquet"), "-q", "--map", "x=importer"])
    assert result.exit_code == 2
    assert "unknown canonical column 'importer'" in _stderr(result)
    result = _cli(["consolidate", str(path), "-o", str(tmp_path / "a.parquet"), "-q", "--preset", "nope"])
    assert result.exit_code == 2
    assert "unknown column preset 'nope'" in _stderr(result)


def test_cli_bad_rows_are_not_an_error(mixed_csv, tmp_path):
    out = tmp_path / "accounts.parquet"
    result = _cli(["consolidate", str(mixed_csv), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{N_GOOD - len(CSV_BAD):,} accepted, {len(CSV_BAD):,} rejected" in result.output
    rejects = pq.read_table(tmp_path / "accounts.rejects.parquet")
    assert rejects.num_rows == len(CSV_BAD)
    assert pq.read_table(out).equals(ceecore.consolidate(mixed_csv))


# ----------------------------------------------------------------------------- regressions
# Bugs these tests found, now fixed.


def _with_one_bad_row(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("entered_value")
    values = [-1.0] + table["entered_value"].to_pylist()[1:]
    return table.set_column(i, "entered_value", pa.array(values, pa.float64()))


@pytest.mark.parametrize("producer", ["pyarrow-string_view", "polars"])
def test_rejects_file_from_string_view_source(tmp_path, producer):
    table = _with_one_bad_row(_table(GOOD))
    if producer == "polars":
        pl = pytest.importorskip("polars")
        source = pl.from_arrow(table)
    else:
        source = table.set_column(0, "entry_number", table["entry_number"].cast(pa.string_view()))
    rejects = tmp_path / "rejects.parquet"
    run = ceecore.run_consolidation(source, rejects=rejects)
    assert run.stats.by_reason == {"bad_entered_value": 1}
    rej = pq.read_table(rejects).to_pylist()
    assert [(r["row"], r["reason"], r["entry_number"]) for r in rej] == [
        (0, "bad_entered_value", GOOD[0]["entry_number"])]


def test_overflowing_line_number_text_is_a_reject(tmp_path):
    path = tmp_path / "big.csv"
    _write_csv(path, [{**GOOD[0], "line_number": "99999999999999999999"}] + GOOD[1:])
    run = ceecore.run_consolidation(path)
    assert run.stats.by_reason == {"bad_line_number": 1}


def test_huge_integer_entered_value_is_a_reject():
    table = _table(GOOD)
    values = [2**53 + 1] + [int(v) for v in table["entered_value"].to_pylist()[1:]]
    table = table.set_column(table.schema.get_field_index("entered_value"), "entered_value",
                             pa.array(values, pa.int64()))
    got, _ = _codes(table)
    assert got == ["bad_entered_value"] + ["ok"] * (N_GOOD - 1)


def test_impossible_calendar_date_is_a_reject():
    rows = [{**GOOD[0], "entry_date": "2024-02-30"}] + GOOD[1:]
    got, _ = _codes(_table(rows, ("entry_date",)))
    assert got[0] == "bad_entry_date"


def test_a_bad_duty_rate_is_a_reject_even_beside_a_duty_paid():
    rows = [{**GOOD[0], "duty_paid": 12.5, "duty_rate": -3.0}] + GOOD[1:]
    got, _ = _codes(_table(rows))
    assert got == ["bad_duty_rate"] + ["ok"] * (N_GOOD - 1)


@pytest.mark.parametrize("day", [dt.date(1, 1, 1), dt.date(1899, 12, 31), dt.date(2200, 1, 1)])
def test_entry_dates_outside_1900_to_2199_are_rejects(day):
    rows = [{**GOOD[0], "entry_date": day}] + GOOD[1:]
    got, _ = _codes(_table(rows))
    assert got == ["bad_entry_date"] + ["ok"] * (N_GOOD - 1)


def test_unparseable_values_take_their_turn_in_contract_order():
    """A row with a null entry number and an unparseable date: the entry number is checked first."""
    rows = [{**GOOD[0], "entry_number": None, "entry_date": "2024-13-45"},
            {**GOOD[1], "line_number": "x", "entered_value": "12,x"}] + GOOD[2:]
    got, _ = _codes(_table(rows, ("entry_date", "line_number", "entered_value")))
    assert got[:2] == ["missing_entry_number", "bad_line_number"]
    assert got[2:] == ["ok"] * (N_GOOD - 2)
