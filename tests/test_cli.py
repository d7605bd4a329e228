"""The ``ceecore`` command line: in process through click's CliRunner, and once for real.

Every consolidate run is checked against the library (``ceecore.consolidate`` /
``run_consolidation``) on the same data; bad input must exit with code 2 and one line.
"""

from __future__ import annotations

import shutil
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import ceecore
from ceecore import AccountBook, CenterMap, ColumnMapping, load_overrides, run_consolidation
from ceecore.pipeline import REJECT_SCHEMA
from ceecore.synth import generate_table
from ceecore_cli.main import cli
from tests.kcs import KCS_TRAIN, needs_kcs

LINES = 20_000
BAD_VALUE_ROWS = np.arange(5, LINES, 97)  # negative entered values
BAD_HTS_ROWS = np.arange(11, LINES, 389)  # HTS codes with letters


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert got.num_rows == want.num_rows
    assert got.equals(want)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> SimpleNamespace:
    """Sample lines with some rejects, as a table and as Parquet and CSV files."""
    t = generate_table(lines=LINES, accounts=400, seed=5)
    values = t["entered_value"].to_numpy().copy()
    values[BAD_VALUE_ROWS] = -values[BAD_VALUE_ROWS]
    hts = np.array(t["hts_code"].to_pylist(), dtype=object)
    hts[BAD_HTS_ROWS] = "12AB567890"
    t = t.set_column(t.schema.get_field_index("entered_value"), "entered_value", pa.array(values))
    t = t.set_column(t.schema.get_field_index("hts_code"), "hts_code", pa.array(hts, pa.string()))
    d = tmp_path_factory.mktemp("cli_data")
    pq.write_table(t, d / "lines.parquet", row_group_size=6_000)
    pacsv.write_csv(t, d / "lines.csv")
    return SimpleNamespace(table=t, parquet=d / "lines.parquet", csv=d / "lines.csv", dir=d,
                           accounts=ceecore.consolidate(t))


# ------------------------------------------------------------------------ --version, centers


def test_version():
    result = invoke("--version")
    assert result.output.strip() == f"ceecore, version {ceecore.__version__}"


def test_help_lists_commands():
    out = invoke("--help").output
    assert "centers" in out and "consolidate" in out


def _row(output: str, code: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(code + " "))


def test_centers_lists_the_ten_centers():
    out = invoke("centers").output
    lines = out.splitlines()
    assert lines[0].split() == ["code", "name", "field_office", "chapters", "plus_headings", "minus_headings"]
    assert len(lines) == 11
    cmap = CenterMap.default()
    assert [line.split()[0] for line in lines[1:]] == list(cmap.codes) == [f"{i:03d}" for i in range(1, 11)]
    for c in cmap.centers:
        row = _row(out, c.code)
        assert c.name in row and c.field_office in row
    assert "28-38" in _row(out, "001") and "Laredo" in _row(out, "010")


def test_centers_rules():
    out = invoke("centers", "--rules").output
    lines = out.splitlines()
    assert lines[0].split() == ["level", "prefix", "center", "effective_from", "effective_to", "source"]
    assert len(lines) == len(CenterMap.default().rules) + 1
    h8511 = [line.split() for line in lines if line.split()[:2] == ["heading", "8511"]]
    assert h8511 == [["heading", "8511", "010", "2014-03-10", "79", "FR", "13322"],
                     ["heading", "8511", "003", "2014-03-10", "79", "FR", "13322"]]
    ch98 = next(line for line in lines if line.split()[:2] == ["chapter", "98"])
    assert ch98.split()[2] == "HTSUS"  # no Center, no dates: straight to the source column


def test_centers_on_date_moves_8511():
    today = invoke("centers").output
    before = invoke("centers", "--on", "2013-01-01").output
    assert today != before
    # Before 10 March 2014 heading 8511 was Machinery's; now Automotive & Aerospace's.
    assert "8511" in _row(before, "010") and "8511" not in _row(today, "010")
    assert "8511" in _row(today, "003") and "8511" not in _row(before, "003")
    assert "8511" in _row(today, "007") and "8511" in _row(before, "007")  # taken out of chapter 85 either way
    assert invoke("centers", "--on", "2014-03-10").output == invoke("centers", "--on", "2030-01-01").output


def test_centers_bad_date_and_bad_file(tmp_path):
    invoke("centers", "--on", "2013-13-01", code=2)
    bad = tmp_path / "centers.csv"
    bad.write_text("code,name,field_office\n11,Too Short,Nowhere\n")
    result = invoke("centers", "--centers-file", bad, code=2)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:")
    assert str(bad) in result.stderr


def test_centers_user_rule(tmp_path):
    rules = tmp_path / "rules.csv"
    rules.write_text("level,prefix,center,effective_from,effective_to\nheading,8471,007,,\n")
    out = invoke("centers", "--hts-map", rules).output
    assert "8471" in _row(out, "007")
    rules_out = invoke("centers", "--rules", "--hts-map", rules).output
    assert any(line.split()[:3] == ["heading", "8471", "007"] and line.split()[-1] == "user"
               for line in rules_out.splitlines())


# ------------------------------------------------------------------------ consolidate


def test_consolidate_default_output_names(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    result = invoke("consolidate", data.parquet)
    assert files(tmp_path) == ["accounts.parquet", "accounts.rejects.parquet"]  # defaults, no temp files
    got = pq.read_table(tmp_path / "accounts.parquet")
    assert_same(got, data.accounts)
    rejects = pq.read_table(tmp_path / "accounts.rejects.parquet")
    assert rejects.num_rows == len(set(BAD_VALUE_ROWS) | set(BAD_HTS_ROWS)) and rejects.schema.equals(REJECT_SCHEMA)
    out = result.stdout
    assert out.startswith(f"read {LINES:,} lines from 1 input(s) in ")
    assert f"{got.num_rows:,} accounts by Center:" in out
    for c in CenterMap.default().centers:
        assert f"{c.code} {c.name}" in out
    assert "accounts -> accounts.parquet" in out
    assert "rejects  -> accounts.rejects.parquet" in out
    assert "state" not in out


def test_consolidate_quiet(tmp_path, data):
    result = invoke("consolidate", data.parquet, "-q", "-o", tmp_path / "a.parquet")
    assert result.output == ""
    assert files(tmp_path) == ["a.parquet", "a.rejects.parquet"]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_consolidate_files_match_library(tmp_path, data, kind):
    src = getattr(data, kind)
    # Chapters 01-09 exist, so CSV HTS codes must stay text to keep their leading zero.
    assert pc.any(pc.starts_with(data.table["hts_code"], "0")).as_py()
    out, rej = tmp_path / "acc.parquet", tmp_path / "acc.rejects.parquet"
    result = invoke("consolidate", src, "-o", out)
    got = pq.read_table(out)
    assert_same(got, data.accounts)  # same as the library on the in-memory table
    assert_same(got, ceecore.consolidate(str(src)))
    lib_rejects = tmp_path / "lib.rejects.parquet"
    run = run_consolidation(str(src), rejects=lib_rejects)
    assert_same(pq.read_table(rej), pq.read_table(lib_rejects))
    # Rejects point back at the input's rows.
    r = pq.read_table(rej)
    assert set(r["source"].to_pylist()) == {str(src)}
    bad = sorted(set(BAD_VALUE_ROWS) | set(BAD_HTS_ROWS))
    assert r["row"].to_pylist() == bad
    s = run.stats
    assert s.rejected == len(bad)
    out_text = result.stdout
    assert f"read {LINES:,} lines from 1 input(s)" in out_text
    assert f"{s.accepted:,} accepted, {s.rejected:,} rejected" in out_text
    for reason, count in s.by_reason.items():
        assert any(line.split() == [reason, f"{count:,}"] for line in out_text.splitlines())
    assert f"{got.num_rows:,} accounts by Center:" in out_text


def test_consolidate_several_inputs_and_directories(tmp_path, data):
    t = data.table
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    pq.write_table(t.slice(0, 7_000), d / "a.parquet")
    pacsv.write_csv(t.slice(7_000, 6_000), d / "sub" / "b.csv")
    with ipc.new_file(d / "c.arrow", t.schema) as w:
        w.write_table(t.slice(13_000))
    (d / "notes.txt").write_text("ignored")
    invoke("consolidate", d, "-o", tmp_path / "dir.parquet", "-q")
    assert_same(pq.read_table(tmp_path / "dir.parquet"), data.accounts)
    invoke("consolidate", d / "c.arrow", d / "a.parquet", d / "sub" / "b.csv", "-o", tmp_path / "list.parquet", "-q")
    assert_same(pq.read_table(tmp_path / "list.parquet"), data.accounts)
    assert pq.read_table(tmp_path / "list.rejects.parquet").num_rows == len(set(BAD_VALUE_ROWS) | set(BAD_HTS_ROWS))


def test_consolidate_arrow_output_and_rejects_path(tmp_path, data):
    out, rej = tmp_path / "acc.arrow", tmp_path / "elsewhere" / "bad_rows.parquet"
    result = invoke("consolidate", data.parquet, "-o", out, "--rejects", rej)
    assert_same(ipc.open_file(out).read_all(), data.accounts)
    assert pq.read_metadata(rej).num_rows > 0
    assert f"rejects  -> {rej}" in result.stdout
    assert files(tmp_path) == ["acc.arrow", "elsewhere"]


def _renamed(data, tmp_path: Path, names: dict[str, str]) -> Path:
    t = data.table.rename_columns([names.get(n, n) for n in data.table.column_names])
    path = tmp_path / "renamed.csv"
    pacsv.write_csv(t, path)
    return path


def test_map_renames(tmp_path, data):
    names = {"importer_id": "IOR Number", "hts_code": "Tariff", "entered_value": "Value ($)", "port_code": "Port"}
    src = _renamed(data, tmp_path, names)
    invoke("consolidate", src, "-o", tmp_path / "out.parquet", "-q",
           *[x for old, new in names.items() for x in ("--map", f"{new}={old}")])
    assert_same(pq.read_table(tmp_path / "out.parquet"), data.accounts)
    # Rejected rows keep their raw text under the canonical names.
    rejects = pq.read_table(tmp_path / "out.rejects.parquet")
    assert rejects.num_rows == len(set(BAD_VALUE_ROWS) | set(BAD_HTS_ROWS))
    assert "12AB567890" in rejects["hts_code"].to_pylist()


def test_mapping_toml(tmp_path, data):
    names = {"importer_id": "ior", "hts_code": "tariff", "entry_number": "entry no"}
    src = _renamed(data, tmp_path, names)
    toml = tmp_path / "mapping.toml"
    toml.write_text('[columns]\nior = "importer_id"\ntariff = "hts_code"\n"entry no" = "entry_number"\n')
    invoke("consolidate", src, "--mapping", toml, "-o", tmp_path / "out.parquet", "-q")
    assert_same(pq.read_table(tmp_path / "out.parquet"), data.accounts)


def test_mapping_toml_constants_and_map_on_top(tmp_path, data):
    # The file lacks line_number (a constant fills it) and names the importer twice over:
    # --map wins over the TOML file.
    t = data.table.drop_columns(["line_number"]).rename_columns(
        ["IOR" if n == "importer_id" else n for n in data.table.drop_columns(["line_number"]).column_names])
    t = t.append_column("other_ior", t["IOR"])
    src = tmp_path / "in.parquet"
    pq.write_table(t, src)
    toml = tmp_path / "mapping.toml"
    toml.write_text('[columns]\nIOR = "importer_id"\n\n[constants]\nline_number = 1\n')
    invoke("consolidate", src, "--mapping", toml, "--map", "other_ior=importer_id",
           "-o", tmp_path / "out.parquet", "-q")
    mapping = ColumnMapping.from_toml(toml).then(ColumnMapping.from_pairs(["other_ior=importer_id"]))
    want = ceecore.consolidate(t, mapping=mapping)
    assert_same(pq.read_table(tmp_path / "out.parquet"), want)
    assert want["importer_id"].to_pylist() == data.accounts["importer_id"].to_pylist()
    assert_same(want.select(["importer_id", "center", "entered_value"]),
                data.accounts.select(["importer_id", "center", "entered_value"]))


@needs_kcs
def test_preset_kcs(tmp_path):
    out = tmp_path / "kcs.parquet"
    result = invoke("consolidate", KCS_TRAIN, "--preset", "kcs", "-o", out)
    accounts = pq.read_table(out)
    assert accounts.num_rows == 12_720
    assert pq.read_metadata(tmp_path / "kcs.rejects.parquet").num_rows == 0
    assert ", 0 rejected" in result.stdout
    assert "12,720 accounts by Center:" in result.stdout
    assert_same(accounts, ceecore.consolidate(str(KCS_TRAIN), mapping=ColumnMapping.preset("kcs")))
    assert accounts["lines"].to_numpy().sum() == 37_385


def test_overrides(tmp_path, data):
    ids = data.accounts["importer_id"].to_pylist()
    centers = data.accounts["center"].to_pylist()
    a, b = ids[3], ids[10]
    new_a = "006" if centers[3] != "006" else "002"
    path = tmp_path / "overrides.csv"
    path.write_text(f"importer_id,center,note\n{a},{new_a},moved by hand\n{b},{centers[10]},\"kept, noted\"\n")
    invoke("consolidate", data.parquet, "--overrides", path, "-o", tmp_path / "out.parquet", "-q")
    got = pq.read_table(tmp_path / "out.parquet")
    assert_same(got, ceecore.consolidate(data.table, overrides=load_overrides(path)))
    rows = {r["importer_id"]: r for r in got.to_pylist()}
    assert rows[a]["center"] == new_a and rows[a]["assigned_by"] == "override"
    assert rows[a]["override_note"] == "moved by hand"
    assert rows[a]["center_name"] == CenterMap.default().center(new_a).name
    assert rows[b]["center"] == centers[10] and rows[b]["assigned_by"] == "override"
    assert rows[b]["override_note"] == "kept, noted"
    others = [r for k, r in rows.items() if k not in (a, b)]
    assert {r["assigned_by"] for r in others} <= {"rule", None}
    assert all(r["override_note"] is None for r in others)


def test_assign_by_value(tmp_path, data):
    invoke("consolidate", data.parquet, "--assign-by", "value", "-o", tmp_path / "v.parquet", "-q")
    got = pq.read_table(tmp_path / "v.parquet")
    assert_same(got, ceecore.consolidate(data.table, assign_by="value"))
    assert not got["center"].equals(data.accounts["center"])  # some accounts move
    invoke("consolidate", data.parquet, "--assign-by", "lines", "-o", tmp_path / "l.parquet", "-q")
    assert_same(pq.read_table(tmp_path / "l.parquet"), data.accounts)
    invoke("consolidate", data.parquet, "--assign-by", "weight", code=2)


@pytest.mark.parametrize("state_name", ["book.arrow", "book.state"])
def test_state_round_trip(tmp_path, data, state_name):
    out, state = tmp_path / "acc.parquet", tmp_path / state_name
    result = invoke("consolidate", data.parquet, "-o", out, "--state", state)
    assert f"state    -> {state}" in result.stdout
    table = ipc.open_file(state).read_all()  # an Arrow IPC file
    assert table.schema.metadata[b"ceecore.state"] == b"ceecore.accounts/2"
    book = AccountBook.from_arrow(table)
    assert len(book) == data.accounts.num_rows
    assert_same(book.result(), pq.read_table(out))
    assert_same(book.to_arrow(), table)
    # Two halves' states merge to the whole.
    half = data.table.num_rows // 2
    pq.write_table(data.table.slice(0, half), tmp_path / "h1.parquet")
    pq.write_table(data.table.slice(half), tmp_path / "h2.parquet")
    books = []
    for k in (1, 2):
        invoke("consolidate", tmp_path / f"h{k}.parquet", "-o", tmp_path / f"h{k}.out.parquet",
               "--state", tmp_path / f"h{k}.arrow", "-q")
        books.append(AccountBook.from_arrow(ipc.open_file(tmp_path / f"h{k}.arrow").read_all()))
    books[0].merge(books[1])
    assert_same(books[0].result(), data.accounts)


def test_threads_do_not_change_outputs(tmp_path, data):
    outs = {}
    for n in (1, 2):
        d = tmp_path / f"t{n}"
        invoke("consolidate", data.parquet, "--threads", n, "-o", d / "acc.parquet", "--state", d / "st.arrow", "-q")
        outs[n] = (pq.read_table(d / "acc.parquet"), pq.read_table(d / "acc.rejects.parquet"),
                   ipc.open_file(d / "st.arrow").read_all())
    for a, b in zip(outs[1], outs[2]):
        assert_same(a, b)
    assert_same(outs[1][0], data.accounts)
    invoke("consolidate", data.parquet, "--threads", 0, code=2)


def test_threads_cap_arrows_own_pool(tmp_path, data, monkeypatch):
    """``--threads N`` sizes Arrow's pool (Parquet decoding, compute) to N as well."""
    before = pa.cpu_count()
    monkeypatch.setattr(pa, "set_cpu_count", lambda n: seen.append(n))  # (the test process's pool stays as it is)
    seen: list[int] = []
    invoke("consolidate", data.parquet, "--threads", 1, "-o", tmp_path / "acc.parquet", "-q")
    invoke("consolidate", data.parquet, "-o", tmp_path / "acc2.parquet", "-q")  # (no --threads: left alone)
    assert seen == [1] and pa.cpu_count() == before


# ------------------------------------------------------------------------ bad input: exit 2, one line


def _write_missing_hts(tmp_path: Path, data) -> Path:
    path = tmp_path / "no_hts.csv"
    pacsv.write_csv(data.table.slice(0, 50).drop_columns(["hts_code"]), path)
    return path


def _write_float_hts(tmp_path: Path, data) -> Path:
    t = data.table.slice(0, 50)
    t = t.set_column(t.schema.get_field_index("hts_code"), "hts_code", pa.array(np.linspace(1, 2, 50)))
    path = tmp_path / "float_hts.parquet"
    pq.write_table(t, path)
    return path


def _bad_overrides(tmp_path: Path, data) -> list[str]:
    path = tmp_path / "overrides.csv"
    path.write_text(f"importer_id,center,note\n{data.accounts['importer_id'][0]},011,no such center\n")
    return [str(data.parquet), "--overrides", str(path)]


BAD_INPUTS = {
    # name: (args builder, fragments the one-line message must contain)
    "missing column": (lambda tp, d: [str(_write_missing_hts(tp, d))], ["no_hts.csv", "'hts_code'", "missing"]),
    "missing renamed column": (lambda tp, d: [str(d.csv), "--map", "tariff=hts_code"],
                               ["lines.csv", "'hts_code'", "'tariff'"]),
    "column of wrong type": (lambda tp, d: [str(_write_float_hts(tp, d))], ["float_hts.parquet", "'hts_code'"]),
    "unknown preset": (lambda tp, d: [str(d.csv), "--preset", "nope"], ["unknown column preset 'nope'", "kcs"]),
    "bad --map syntax": (lambda tp, d: [str(d.csv), "--map", "importer_id"], ["--map", "'importer_id'"]),
    "--map to unknown column": (lambda tp, d: [str(d.csv), "--map", "a=bogus"], ["'bogus'"]),
    "unknown center in overrides": (_bad_overrides, ["overrides.csv", "line 2", "'011'"]),
    "corrupt parquet": (lambda tp, d: [str(_corrupt(tp))], ["corrupt.parquet"]),
    "bad mapping toml": (lambda tp, d: [str(d.csv), "--mapping", str(_bad_toml(tp))], ["mapping.toml"]),
}


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 definitely not parquet")
    return path


def _bad_toml(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text("[columns\nx = ")
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tmp_path, data, case):
    build, fragments = BAD_INPUTS[case]
    args = build(tmp_path, data)
    out = tmp_path / "out" / "acc.parquet"
    before = files(tmp_path)
    result = invoke("consolidate", *args, "-o", out, code=2)
    message = result.stderr
    assert message.startswith("error: ") and message.endswith("\n")
    assert message.count("\n") == 1, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert result.stdout == ""
    # Nothing written, not even a temporary file.
    assert not out.exists() and not (tmp_path / "out" / "acc.rejects.parquet").exists()
    # (The output directory itself may have been created, but it is left empty.)
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == []
    assert [f for f in files(tmp_path) if f != "out"] == before


def test_failure_mid_run_keeps_previous_outputs(tmp_path, data):
    out = tmp_path / "acc.parquet"
    invoke("consolidate", data.parquet, "-o", out, "-q")
    old = out.read_bytes(), (tmp_path / "acc.rejects.parquet").read_bytes()
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(data.table, d / "a.parquet")  # read first, rejects written...
    pq.write_table(data.table.drop_columns(["country_of_origin"]), d / "b.parquet")  # ...then this fails
    result = invoke("consolidate", d, "-o", out, code=2)
    assert str(d / "b.parquet") in result.stderr and "'country_of_origin'" in result.stderr
    assert (out.read_bytes(), (tmp_path / "acc.rejects.parquet").read_bytes()) == old
    assert files(tmp_path) == ["acc.parquet", "acc.rejects.parquet", "in"]


def test_missing_input_path_is_a_usage_error(tmp_path):
    result = invoke("consolidate", tmp_path / "nope.parquet", code=2)
    assert "nope.parquet" in result.stderr and "does not exist" in result.stderr


# ------------------------------------------------------------------------ real processes


def test_python_dash_m_and_console_script(tmp_path, data):
    out = tmp_path / "m.parquet"
    proc = subprocess.run([sys.executable, "-m", "ceecore", "consolidate", str(data.parquet), "-o", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"read {LINES:,} lines" in proc.stdout
    assert_same(pq.read_table(out), data.accounts)
    assert (tmp_path / "m.rejects.parquet").exists()

    exe = shutil.which("ceecore")
    if exe is None:
        pytest.skip("the ceecore console script is not on PATH")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ceecore, version {ceecore.__version__}"
    out2 = tmp_path / "script" / "s.arrow"
    proc = subprocess.run([exe, "consolidate", str(data.csv), "-o", str(out2), "-q", "--threads", "2"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert_same(ipc.open_file(out2).read_all(), data.accounts)
    assert files(out2.parent) == ["s.arrow", "s.rejects.parquet"]
    bad = _write_missing_hts(tmp_path, data)
    proc = subprocess.run([exe, "consolidate", str(bad), "-o", str(tmp_path / "bad.parquet")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr and "'hts_code'" in proc.stderr
    assert not (tmp_path / "bad.parquet").exists()


def test_closed_pipe_is_not_an_input_error():
    """`ceecore centers | head -1`: the reader goes away; no 'error:' and no traceback."""
    proc = subprocess.run(f"{shlex.quote(sys.executable)} -m ceecore centers --rules | head -1",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("level")
    assert "error" not in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_an_error_naming_a_file_is_one_line_whatever_its_name(tmp_path):
    """Control characters in a name the message echoes (a newline, a terminal escape)
    are escaped: the error stays one line and cannot drive the terminal."""
    table = generate_table(lines=200, accounts=5, seed=1)
    pq.write_table(table, tmp_path / "in.parquet")
    shown = {"new\nline.csv": "new\\nline.csv", "red\x1b[31m.csv": "red\\x1b[31m.csv",
             "bell\x07\x9b.csv": "bell\\x07\\x9b.csv"}
    for name, escaped in shown.items():
        result = invoke("consolidate", tmp_path / "in.parquet", "-o", tmp_path / name, "-q", code=2)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert escaped in result.stderr and not any(c in result.stderr for c in "\x1b\x07\x9b"), result.stderr


def test_an_output_that_is_no_file_name_is_a_clear_error(tmp_path):
    pq.write_table(generate_table(lines=100, accounts=5, seed=1), tmp_path / "in.parquet")
    for job in (["consolidate"], ["fit"], ["score", "--model", str(tmp_path / "in.parquet")]):
        result = invoke(*job, tmp_path / "in.parquet", "-o", "", code=2)  # (it was "PosixPath('.') has an empty name")
        assert result.stderr == "error: -o '' is not a file name\n", result.output


def test_show_ids_escapes_control_characters_the_contract_lets_through(tmp_path):
    """C1 controls (U+0080-U+009F, U+009B is a terminal's CSI) pass the key contract, so
    ``run --show-ids`` prints importer ids escaped."""
    table = generate_table(lines=300, accounts=5, seed=2)
    ids = pc.binary_join_element_wise(table["importer_id"], pa.scalar("\x9b31m"), "")
    pq.write_table(table.set_column(table.schema.get_field_index("importer_id"), "importer_id", ids),
                   tmp_path / "in.parquet")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"), "--show-ids"],
                                color=True)
    assert result.exit_code == 0, result.output
    assert "\x9b" not in result.output and "\\x9b31m" in result.output
