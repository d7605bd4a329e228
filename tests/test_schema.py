"""The data contract: column mappings (TOML, pairs, presets, layering), constants, casts.

Also the shipped ``kcs`` preset on the real KCS customs declarations CSVs (see
``tests/kcs.py`` for where they are looked for; skipped, saying so, where absent).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from decimal import Decimal

import ceecore
from ceecore import CANONICAL, REJECT_REASONS, REQUIRED, ColumnMapping, ContractError
from ceecore.synth import generate_table
from ceecore.schema import canonicalize, reason_code
from tests import reference
from tests.kcs import KCS_TRAIN, KCS_VALID, needs_kcs


SCHEMA = pa.schema([
    ("entry_number", pa.string()), ("line_number", pa.int64()), ("importer_id", pa.string()),
    ("port_code", pa.string()), ("entry_date", pa.date32()), ("hts_code", pa.string()),
    ("country_of_origin", pa.string()), ("entered_value", pa.float64()), ("duty_rate", pa.float64()),
    ("quantity", pa.float64()), ("gross_weight_kg", pa.float64()), ("manufacturer_id", pa.string()),
])


@pytest.fixture(scope="module")
def canon() -> pa.Table:
    return generate_table(lines=300, accounts=25, seed=3).select(SCHEMA.names).cast(SCHEMA)


def _book(table, mapping=None):
    book = ceecore.AccountBook(threads=2)
    codes = np.concatenate([book.update(b, mapping) for b in table.to_batches()])
    return [REJECT_REASONS[c] for c in codes], book


def _same_book(a: ceecore.AccountBook, b: ceecore.AccountBook) -> None:
    assert a.result().equals(b.result())
    assert a.to_arrow().equals(b.to_arrow())


def _replace(table: pa.Table, name: str, array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _rename(table: pa.Table, renames: dict[str, str]) -> pa.Table:
    return table.rename_columns([renames.get(n, n) for n in table.column_names])


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ----------------------------------------------------------------------------- constants of the contract


def test_canonical_names_and_reasons():
    assert set(REQUIRED) <= set(CANONICAL)
    assert set(ceecore.CONSOLIDATION_COLUMNS) <= set(CANONICAL)
    assert set(REQUIRED) <= set(ceecore.CONSOLIDATION_COLUMNS)
    assert REJECT_REASONS[0] == "ok" and len(set(REJECT_REASONS)) == len(REJECT_REASONS)
    for k, reason in enumerate(REJECT_REASONS):
        assert reason_code(reason) == k
    for name in REQUIRED:
        assert f"bad_{name}" in REJECT_REASONS or f"missing_{name}" in REJECT_REASONS


def test_contract_error_message_and_attributes():
    err = ContractError("a.csv", "required column is missing", "hts_code")
    assert isinstance(err, ValueError)
    assert str(err) == "a.csv: column 'hts_code': required column is missing"
    assert (err.source, err.column) == ("a.csv", "hts_code")
    plain = ContractError("dir/", "directory holds no files")
    assert str(plain) == "dir/: directory holds no files" and plain.column is None


# ----------------------------------------------------------------------------- ColumnMapping construction


def test_unknown_canonical_names_are_errors():
    with pytest.raises(ValueError, match="unknown canonical column 'importer'"):
        ColumnMapping(columns={"Importer": "importer"})
    with pytest.raises(ValueError, match="unknown canonical column 'line_no'"):
        ColumnMapping(constants={"line_no": 1})
    with pytest.raises(ValueError, match="several source columns map to importer_id"):
        ColumnMapping(columns={"A": "importer_id", "B": "importer_id"})


def test_from_toml(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text(
        '[columns]\n"Entry No" = "entry_number"\nImporter = "importer_id"\n"Declared Value" = "entered_value"\n'
        '[constants]\nline_number = 1\ncountry_of_origin = "MX"\nentry_date = 2024-03-05\n'
        '[options]\ndate_format = "%d/%m/%Y"\n'
    )
    m = ColumnMapping.from_toml(path)
    assert dict(m.columns) == {"Entry No": "entry_number", "Importer": "importer_id",
                               "Declared Value": "entered_value"}
    assert dict(m.constants) == {"line_number": 1, "country_of_origin": "MX", "entry_date": dt.date(2024, 3, 5)}
    assert m.date_format == "%d/%m/%Y"
    assert m.source_of("importer_id") == "Importer"
    assert m.source_of("port_code") == "port_code"  # canonical names need no entry
    assert ColumnMapping.from_toml(str(path)) == m


@pytest.mark.parametrize("text,match", [
    ("[columns]\nImporter = \"importer\"\n", "unknown canonical column 'importer'"),
    ("[colums]\nImporter = \"importer_id\"\n", "unknown sections"),
    ("[columns\n", "cannot read the column mapping"),
    ("[columns]\nA = \"importer_id\"\nB = \"importer_id\"\n", "several source columns"),
], ids=["unknown-canonical", "unknown-section", "bad-toml", "duplicate-target"])
def test_from_toml_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        ColumnMapping.from_toml(path)
    assert str(path) in str(err.value)


def test_from_toml_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.toml: cannot read the column mapping"):
        ColumnMapping.from_toml(tmp_path / "nope.toml")


def test_from_pairs():
    m = ColumnMapping.from_pairs(["Importer=importer_id", "Value= entered_value"])
    assert dict(m.columns) == {"Importer": "importer_id", "Value": "entered_value"}
    assert m.constants == {} and m.date_format is None  # None: ISO dates
    assert ColumnMapping.from_pairs([]) == ColumnMapping()
    for bad in ["importer_id", "=importer_id", "Importer=", ""]:
        with pytest.raises(ValueError, match="--map takes source=canonical"):
            ColumnMapping.from_pairs([bad])
    with pytest.raises(ValueError, match="unknown canonical column 'importer'"):
        ColumnMapping.from_pairs(["Importer=importer"])


def test_preset_kcs():
    m = ColumnMapping.preset("kcs")
    assert m.source_of("entry_number") == "Declaration ID"
    assert m.source_of("port_code") == "Office ID"
    assert m.source_of("hts_code") == "HS6 Code"
    assert m.source_of("entered_value") == "Item Price"
    assert m.source_of("importer_id") == "Importer ID"
    assert m.source_of("manufacturer_id") == "Seller ID"
    assert m.constants == {"line_number": 1}
    assert set(REQUIRED) <= set(m.columns.values()) | set(m.constants)


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown column preset 'acme'; known: .*kcs"):
        ColumnMapping.preset("acme")


def test_then_precedence():
    base = ColumnMapping({"Imp": "importer_id", "Val": "entered_value", "Port": "port_code"},
                         {"line_number": 1, "country_of_origin": "CN"}, "%d/%m/%Y")
    top = ColumnMapping({"Importer": "importer_id", "Port": "manufacturer_id"}, {"country_of_origin": "MX"})
    m = base.then(top)
    # other wins on a canonical target and on a source name; untouched entries stay
    assert m.source_of("importer_id") == "Importer"
    assert "Imp" not in m.columns
    assert m.columns["Port"] == "manufacturer_id"
    assert m.source_of("port_code") == "port_code"
    assert m.source_of("entered_value") == "Val"
    assert m.constants == {"line_number": 1, "country_of_origin": "MX"}
    assert m.date_format == "%d/%m/%Y"  # a default format does not override
    assert base.then(ColumnMapping(date_format="%Y%m%d")).date_format == "%Y%m%d"
    assert ColumnMapping().then(base) == base
    assert base.then(ColumnMapping()) == base


def test_then_chain_like_the_cli(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[columns]\n"Item Price" = "quantity"\nValue = "entered_value"\n')
    m = ColumnMapping.preset("kcs").then(ColumnMapping.from_toml(path)).then(
        ColumnMapping.from_pairs(["Seller=manufacturer_id"]))
    assert m.source_of("entered_value") == "Value"
    assert m.source_of("quantity") == "Item Price"
    assert m.source_of("manufacturer_id") == "Seller"
    assert m.source_of("importer_id") == "Importer ID"
    assert m.constants == {"line_number": 1}


# ----------------------------------------------------------------------------- mappings in use


def test_renamed_columns_give_the_same_accounts(canon):
    renames = {"entry_number": "Entry", "importer_id": "IOR", "entered_value": "Value", "hts_code": "HTS"}
    mapping = ColumnMapping({v: k for k, v in renames.items()})
    got, book = _book(_rename(canon, renames), mapping)
    want, ref = _book(canon)
    assert got == want
    _same_book(book, ref)
    # a canonical-named column that the mapping does not point at is ignored
    decoy = _rename(canon, renames).append_column("importer_id", pa.array(["DECOY"] * canon.num_rows))
    _, book = _book(decoy, mapping)
    _same_book(book, ref)


def test_constants_fill_absent_columns(canon):
    n = canon.num_rows
    base = canon.drop_columns(["line_number", "country_of_origin", "port_code"])
    mapping = ColumnMapping(constants={"line_number": 1, "country_of_origin": "MX", "port_code": 101})
    got, book = _book(base, mapping)
    assert got == ["ok"] * n
    filled = base.append_column("line_number", pa.array([1] * n, pa.int64())) \
                 .append_column("country_of_origin", pa.array(["MX"] * n)) \
                 .append_column("port_code", pa.array(["0101"] * n))
    _, ref = _book(filled)
    _same_book(book, ref)
    state = book.to_arrow()
    assert set(pc.list_flatten(state["countries"]).to_pylist()) == {"MX"}
    assert set(pc.list_flatten(state["ports"]).to_pylist()) == {"0101"}


def test_constants_do_not_override_present_columns(canon):
    mapping = ColumnMapping(constants={"country_of_origin": "MX", "line_number": 7})
    _, book = _book(canon, mapping)
    _, ref = _book(canon)
    _same_book(book, ref)


def test_date_constant_and_date_format(canon, tmp_path):
    toml = tmp_path / "m.toml"
    toml.write_text("[constants]\nentry_date = 2024-03-05\n")
    got, book = _book(canon.drop_columns(["entry_date"]), ColumnMapping.from_toml(toml))
    assert set(got) == {"ok"}
    assert set(book.result()["first_entry_date"].to_pylist()) == {dt.date(2024, 3, 5)}

    as_text = _replace(canon, "entry_date", pc.strftime(canon["entry_date"], format="%d/%m/%Y"))
    got, book = _book(as_text, ColumnMapping(date_format="%d/%m/%Y"))
    assert set(got) == {"ok"}
    _same_book(book, _book(canon)[1])
    got, _ = _book(as_text)  # the default ISO format does not read them
    assert set(got) == {"bad_entry_date"}


def test_text_date_constant_uses_the_date_format(canon):
    mapping = ColumnMapping(constants={"entry_date": "05/03/2024"}, date_format="%d/%m/%Y")
    got, book = _book(canon.drop_columns(["entry_date"]), mapping)
    assert set(got) == {"ok"}
    assert set(book.result()["last_entry_date"].to_pylist()) == {dt.date(2024, 3, 5)}


def test_constant_that_does_not_fit(canon):
    mapping = ColumnMapping(constants={"entry_date": [1, 2]})
    with pytest.raises(ContractError, match="column 'entry_date'"):
        _book(canon.drop_columns(["entry_date"]), mapping)


# ----------------------------------------------------------------------------- casts to the canonical types


@pytest.mark.parametrize("int_type", [pa.int16(), pa.int32(), pa.int64(), pa.uint16()], ids=str)
def test_numeric_port_codes_are_zero_padded(canon, int_type):
    # ports 1xxx become 0xxx, so that some codes have a leading zero to lose
    text = pc.replace_substring_regex(canon["port_code"], "^1", "0")
    padded = _replace(canon, "port_code", text)
    ports = pc.cast(text, pa.int64())
    assert pc.min(ports).as_py() < 1000
    got, book = _book(_replace(padded, "port_code", ports.cast(int_type)))
    want, ref = _book(padded)
    assert got == want == ["ok"] * padded.num_rows
    _same_book(book, ref)
    assert any(p.startswith("0") for p in pc.list_flatten(ref.to_arrow()["ports"]).to_pylist())


def test_short_numeric_ports(canon):
    small = canon.slice(0, 4)
    got, book = _book(_replace(small, "port_code", pa.array([7, 101, 1001, 12345], pa.int64())))
    assert got == ["ok", "ok", "ok", "bad_port_code"]
    ports = sorted(pc.list_flatten(book.to_arrow()["ports"]).to_pylist())
    assert ports == sorted({"0007", "0101", "1001"})
    got, _ = _book(_replace(small, "port_code", pa.array(["7", "101", "0101", "-1"])))
    assert got == ["ok", "ok", "ok", "bad_port_code"]


def test_dictionary_encoded_integer_ports(canon):
    ports = pc.cast(canon["port_code"], pa.int64()).combine_chunks().dictionary_encode()
    got, book = _book(_replace(canon, "port_code", ports))
    assert set(got) == {"ok"}
    _same_book(book, _book(canon)[1])


def test_integer_hts_cast_to_text(canon):
    kept = canon.filter(pc.invert(pc.starts_with(canon["hts_code"], "0")))  # leading zeros: test below
    hts = pc.cast(kept["hts_code"], pa.int64())
    assert pc.min(hts).as_py() >= 10**9 and kept.num_rows > 200
    got, book = _book(_replace(kept, "hts_code", hts))
    want, ref = _book(kept)
    assert got == want
    _same_book(book, ref)
    got, book = _book(_replace(kept, "hts_code", hts.combine_chunks().dictionary_encode()))
    _same_book(book, ref)


def test_integer_hts_with_leading_zero_keeps_its_chapter(canon):
    row = canon.slice(0, 1)
    _, text_book = _book(_replace(row, "hts_code", pa.array(["0101210010"])))
    got, int_book = _book(_replace(row, "hts_code", pa.array([101210010], pa.int64())))
    assert got == ["ok"]
    assert text_book.to_arrow()["hts_chapters"].to_pylist() == [[1]]
    assert int_book.to_arrow()["hts_chapters"].to_pylist() == [[1]]


def test_other_numeric_types_are_cast(canon):
    cast = canon
    cast = _replace(cast, "line_number", canon["line_number"].cast(pa.int32()))
    cast = _replace(cast, "entered_value", canon["entered_value"].cast(pa.decimal128(18, 2)))
    cast = _replace(cast, "quantity", canon["quantity"].cast(pa.float32()))
    cast = _replace(cast, "entry_date", canon["entry_date"].cast(pa.timestamp("ms")))
    got, book = _book(cast)
    want, ref = _book(canon)
    assert got == want
    _same_book(book, ref)
    # float line numbers are fine when whole, rejected when not
    floats = pa.array([1.0, 2.5, None, 3.0] + [1.0] * (canon.num_rows - 4))
    got, _ = _book(_replace(canon, "line_number", floats))
    assert got[:4] == ["ok", "bad_line_number", "missing_line_number", "ok"]


def test_canonicalize_types_and_precheck():
    batch = pa.record_batch({
        "Entry": pa.array(["A1", "A2", "A3"]).cast(pa.string_view()),
        "line_number": pa.array(["1", "2", "x"]),
        "port_code": pa.array([101, 2704, None], pa.int64()),
        "entry_date": pa.array(["2024-01-02", "2024-13-45", None]),
        "entered_value": pa.array([" 12.50 ", "12,x", ""]),
    })
    mapping = ColumnMapping({"Entry": "entry_number"})
    out, codes = canonicalize(batch, mapping, ["entry_number", "line_number", "port_code", "entry_date",
                                                "entered_value"], "<t>")
    assert out.schema.names == ["entry_number", "line_number", "port_code", "entry_date", "entered_value"]
    assert out.schema.field("entry_number").type == pa.string_view()  # text stays as it came
    assert out.schema.field("line_number").type == pa.int64()
    assert out.schema.field("port_code").type == pa.string()
    assert out.schema.field("entry_date").type == pa.date32()
    assert out.schema.field("entered_value").type == pa.float64()
    assert out.column("port_code").to_pylist() == ["101", "2704", None]
    assert out.column("entered_value").to_pylist() == [12.5, None, None]
    assert [REJECT_REASONS[c] for c in codes] == ["ok", "bad_entry_date", "bad_line_number"]


# ----------------------------------------------------------------------------- CSV: numbers stay text


def test_csv_codes_keep_leading_zeros(tmp_path):
    header = ["entry_number", "line_number", "importer_id", "port_code", "entry_date", "hts_code",
              "country_of_origin", "entered_value", "duty_rate", "manufacturer_id"]
    rows = [
        ["00012345678", "1", "0012345", "0101", "2024-01-02", "0101210010", "MX", "100.50", "0", "007"],
        ["00012345678", "2", "0012345", "0101", "2024-01-02", "0803900010", "EC", "00200", "2.5", "0070"],
        ["12345678", "1", "12345", "101", "2024-02-03", "8471300100", "CN", "50", "", ""],
    ]
    path = _write_csv(tmp_path / "zeros.csv", header, rows)
    run = ceecore.run_consolidation(path)
    assert run.stats.rejected == 0
    state = run.book.to_arrow().to_pylist()
    by_importer = {r["importer_id"]: r for r in state}
    assert set(by_importer) == {"0012345", "12345"}  # two accounts: the zeros are kept
    z = by_importer["0012345"]
    assert z["entry_hashes"] == [reference.pair_hash(reference.hash_bytes("00012345678"),
                                                     reference.hash_bytes("0012345"))]
    assert z["ports"] == ["0101"]
    assert z["hts_chapters"] == [1, 8]
    counted = {r["importer_id"]: r for r in run.accounts.to_pylist()}
    assert counted["0012345"]["manufacturers"] == 2  # "007" and "0070" differ
    assert z["entered_value"] == Decimal("300.50")
    assert by_importer["12345"]["ports"] == ["0101"]  # the kernel pads short port codes
    assert by_importer["12345"]["entry_hashes"] == [
        reference.pair_hash(reference.hash_bytes("12345678"), reference.hash_bytes("12345"))]

    # the same data as in-memory text gives the same accounts
    table = pa.table({h: pa.array([r[i] for r in rows]) for i, h in enumerate(header)})
    assert run.accounts.equals(ceecore.consolidate(table))


def test_csv_renamed_codes_keep_leading_zeros(tmp_path):
    header = ["Entry", "Line", "IOR", "Port", "Date", "HTS", "Origin", "Value"]
    rows = [["0001", "1", "007", "0030", "2024-01-02", "010121", "KR", "10"],
            ["0002", "1", "007", "0030", "2024-01-03", "090121", "KR", "20"]]
    path = _write_csv(tmp_path / "renamed.csv", header, rows)
    mapping = ColumnMapping.from_pairs(["Entry=entry_number", "Line=line_number", "IOR=importer_id",
                                        "Port=port_code", "Date=entry_date", "HTS=hts_code",
                                        "Origin=country_of_origin", "Value=entered_value"])
    run = ceecore.run_consolidation(path, mapping=mapping)
    assert run.stats.rejected == 0
    [acc] = run.book.to_arrow().to_pylist()
    assert acc["importer_id"] == "007"
    assert run.accounts.column("entries").to_pylist() == [2]  # "0001" and "0002" differ
    assert acc["ports"] == ["0030"]
    assert acc["hts_chapters"] == [1, 9]


# ----------------------------------------------------------------------------- the KCS dataset


@needs_kcs
def test_kcs_train_has_no_rejects():
    run = ceecore.run_consolidation(KCS_TRAIN, mapping=ColumnMapping.preset("kcs"))
    s = run.stats
    assert s.rows_read == 37385
    assert (s.accepted, s.rejected, s.by_reason) == (37385, 0, {})
    assert run.accounts.num_rows > 0
    assert int(pc.sum(run.accounts["lines"]).as_py()) == 37385
    # "Office ID" holds short numbers: read as text and zero-padded to four digits
    ports = set(pc.list_flatten(run.book.to_arrow()["ports"]).to_pylist())
    assert "0030" in ports and all(len(p) == 4 for p in ports)


@needs_kcs
def test_kcs_valid_has_no_rejects():
    run = ceecore.run_consolidation(KCS_VALID, mapping=ColumnMapping.preset("kcs"))
    assert run.stats.rows_read == run.stats.accepted == 8134


@needs_kcs
def test_kcs_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from ceecore_cli.main import cli

    out = tmp_path / "accounts.parquet"
    result = CliRunner().invoke(cli, ["consolidate", str(KCS_TRAIN), "--preset", "kcs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "37,385 accepted, 0 rejected" in result.output
    assert out.exists() and (tmp_path / "accounts.rejects.parquet").exists()


def test_filer_code_defaults_to_the_entry_numbers_first_three_characters():
    batch = pa.record_batch({"entry_number": pa.array(["ABC12345678", "XY9"], pa.string_view())})
    canonical, codes = canonicalize(batch, ColumnMapping(), ["entry_number", "filer_code"], "t")
    assert canonical["filer_code"].to_pylist() == ["ABC", "XY9"] and not codes.any()
    given = pa.record_batch({"entry_number": ["ABC12345678"], "Declarant ID": ["ZZZ"]})
    canonical, _ = canonicalize(given, ColumnMapping({"Declarant ID": "filer_code"}),
                                ["entry_number", "filer_code"], "t")
    assert canonical["filer_code"].to_pylist() == ["ZZZ"]
