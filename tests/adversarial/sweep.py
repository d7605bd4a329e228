"""An adversarial sweep of the ``ceecore`` command line (issue 11's bar).

Builds cases from a seed (bad input files of every format, option values and option
files, model files, paths, across every command), runs each as a real CLI subprocess in
a fresh temporary directory with a timeout, and classifies the outcome:

- OK: exit 0, outputs readable, and for jobs that read lines rows read = accepted +
  rejected (from the printed counts, the summary and the output files);
- CLEAN: exit 2 with a one-line ``error:`` message (or click's usage ``Error:``) and
  no traceback;
- FAIL: anything else: a signal, another exit code, a traceback, a timeout, an input
  modified or deleted, an output set half-written, staging left behind, output that is
  not UTF-8 or cannot be read, control characters printed (from names or data).

``python3 tests/adversarial/sweep.py --cases 1200 --seed 1`` prints a table per
category and command and every FAIL with the command to reproduce it (``--case N
--keep`` rebuilds one case and keeps its directory); the exit code is 1 if any FAIL.
Each case is built from its own random stream (seed and index), so a case is the same
whatever the number of cases around it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

import ceecore
import ceecore_cli

ROOT = Path(__file__).resolve().parents[2]
# The processes import the ceecore this script imports (installed, or the source tree).
ENV_PATH = os.pathsep.join(dict.fromkeys(str(Path(m.__file__).resolve().parents[1]) for m in (ceecore, ceecore_cli)))
CATEGORIES = ("inputs", "options", "models", "paths")
LINE_JOBS = ("consolidate", "fit", "score", "run")
TIMEOUT = 60.0
STAGING = re.compile(r"^\..*\.tmp$")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # on a terminal: beeps, escapes, lines overwritten
COUNTS = re.compile(r"read ([\d,]+) lines from .*: ([\d,]+) accepted, ([\d,]+) rejected")


# ------------------------------------------------------------------------ the cases

@dataclass
class Case:
    """One CLI run: files made by ``setup`` in a fresh directory, then ``args``.

    ``outputs``: the paths (relative) the job writes if it succeeds; a pre-existing one
    may change only on exit 0, a new one must not appear on a failure. ``unprivileged``:
    run without root's power over permissions (permission cases; the sweep may run as root)."""

    category: str
    command: str
    name: str
    args: list[str]
    setup: Callable[[Path], None]
    outputs: list[str] = field(default_factory=list)
    unprivileged: bool = False
    rejects: str | None = None  # the rejects file, whose rows must be the rejected count
    rows: int | None = None  # the rows the input holds, where known: all must be read
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Base:
    """The data every case starts from, made once per sweep by ``ceecore`` itself."""

    dir: Path
    table: pa.Table  # a small slice of the generated lines (dirty rows included)
    scored: pa.Table  # a small slice of them scored (for evaluate)
    rows: int  # the rows of lines.parquet

    def path(self, name: str) -> str:
        return str(self.dir / name)


def build_base(dir: Path, seed: int) -> Base:
    """Generates the lines (``generate -n 3000 --dirty 40``) and the models, state, scored
    lines and key the cases use."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "key").write_bytes(random.Random(seed).randbytes(32))
    (dir / "other.key").write_bytes(random.Random(seed + 1).randbytes(32))
    (dir / "config.toml").write_text(_other_config())
    steps = [
        ["generate", "-n", "3000", "--dirty", "40", "--seed", str(seed), "-o", "lines.parquet", "-q"],
        ["consolidate", "lines.parquet", "-o", "accounts.parquet", "--state", "state.arrow", "-q"],
        ["fit", "lines.parquet", "-o", "model.arrow", "-q"],
        ["fit", "lines.parquet", "-o", "model_other.arrow", "--config", "config.toml", "-q"],
        ["fit", "lines.parquet", "-o", "model_pn.arrow", "--pseudonymise", "key", "-q"],
        ["score", "lines.parquet", "--model", "model.arrow", "-o", "scored.parquet", "-q"],
    ]
    for args in steps:
        proc = _cli(args, dir)
        if proc.returncode != 0:
            raise SystemExit(f"base step failed: ceecore {' '.join(args)}\n{proc.stderr}")
    table = pq.read_table(dir / "lines.parquet")
    rng = random.Random(seed)
    rows = sorted(rng.sample(range(table.num_rows), 300))
    scored = pq.read_table(dir / "scored.parquet")
    return Base(dir, table.take(rows), scored.take([r for r in rows if r < scored.num_rows]), table.num_rows)


def _other_config() -> str:
    """A scoring config other than the shipped one (for models of another config)."""
    shipped = ROOT / "src" / "ceecore" / "data" / "scoring.toml"
    text = shipped.read_text()
    return re.sub(r"(unit_value_low\s*=\s*)[0-9.]+", r"\g<1>0.55", text, count=1)


def _cli(args: list[str], cwd: Path, timeout: float = TIMEOUT, unprivileged: bool = False,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "PYTHONPATH": ENV_PATH, "OMP_NUM_THREADS": "1"}
    full.pop("CEECORE_PSEUDONYM_KEY", None)  # a key only where a case gives one
    full.update(env or {})
    # Root reads and writes everything: a permission case drops the capabilities that let it.
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if unprivileged else []
    return subprocess.run([*prefix, sys.executable, "-m", "ceecore", *args], cwd=cwd, capture_output=True, text=False,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=full, check=False)


# ----------------------------------------------------------------- hostile values

def _random_type_array(rng: random.Random, n: int) -> pa.Array:
    """``n`` values of a random Arrow type, extremes and nulls among them."""
    def pick(pool: list) -> list:
        return [rng.choice(pool) for _ in range(n)]
    ints = [0, 1, -1, None, 2**31 - 1, -2**31, 7, 999]
    makers: list[Callable[[], pa.Array]] = [
        lambda: pa.array(pick([0, 1, -1, None, 2**63 - 1, -2**63, 10101]), pa.int64()),
        lambda: pa.array(pick([0, 1, None, 2**64 - 1, 2**63]), pa.uint64()),
        lambda: pa.array(pick([0, 1, -1, None, 127, -128]), pa.int8()),
        lambda: pa.array(pick([0, 255, None, 7]), pa.uint8()),
        lambda: pa.array(pick(ints), pa.int32()),
        lambda: pa.array(pick([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 5e-324, None]),
                         pa.float64()),
        lambda: pa.array(pick([0.5, float("nan"), 3.4e38, None]), pa.float32()),
        lambda: pa.array(pick([True, False, None]), pa.bool_()),
        lambda: pa.array(pick(["", "x", "ü", "\x00", "a" * 70, "CN", None, "\ud7ff", "1e9", "a\nb", "\x1b[2J"]), pa.string()),
        lambda: pa.array(pick(["", "0101", None, "9" * 30]), pa.large_string()),
        lambda: pa.array(pick(["", "CN", None, "abc" * 5]), pa.string_view()),
        lambda: pa.array(pick([b"", b"\xff\xfe", b"CN", None, b"\x80abc"]), pa.binary()),
        lambda: pa.array(pick([b"\xc3\x28", b"ok", None]), pa.large_binary()),
        lambda: pa.array(pick([b"ab", b"\xff\xff", None]), pa.binary(2)),
        lambda: pa.array(pick([b"x", b"\xed\xa0\x80", None]), pa.binary_view()),
        lambda: pa.array(pick([0, -719162, 2932896, -2**31, 2**31 - 1, None, 20000]), pa.int32()).view(pa.date32()),
        lambda: pa.array(pick([0, -2**62, 2**62, None, 1700000000000]), pa.int64()).view(pa.date64()),
        lambda: pa.array(pick([0, 2**63 - 1, -2**63 + 1, None, 1735689600]), pa.int64()).cast(
            pa.timestamp(rng.choice(["s", "ms", "us", "ns"]), tz=rng.choice([None, "UTC", "America/New_York", "+14:00"]))),
        lambda: pa.array(pick([0, 86399, None]), pa.int32()).cast(pa.time32("s")),
        lambda: pa.array(pick([0, 1, -1, None]), pa.int64()).cast(pa.duration("us")),
        lambda: pa.array(pick([Decimal(0), Decimal("12.5"), Decimal(-1), Decimal("9" * 28), None]),
                         pa.decimal128(38, 10)),
        lambda: pa.array(pick([Decimal("1.5"), Decimal("-0"), None]), pa.decimal256(50, 5)),
        lambda: pa.array(pick([[1, 2], [], None, [None]]), pa.list_(pa.int64())),
        lambda: pa.array(pick([["a"], [], None]), pa.large_list(pa.string())),
        lambda: pa.array(pick([[1, 2], None]), pa.list_(pa.int32(), 2)),
        lambda: pa.array(pick([{"a": 1, "b": "x"}, None, {"a": None, "b": None}]),
                         pa.struct([("a", pa.int64()), ("b", pa.string())])),
        lambda: pa.array(pick([[("k", 1)], [], None]), pa.map_(pa.string(), pa.int64())),
        lambda: pa.array(pick(["CN", "MX", None, "\xff"]), pa.string()).dictionary_encode().cast(
            pa.dictionary(rng.choice([pa.int8(), pa.int16(), pa.uint32(), pa.int64()]), pa.string())),
        lambda: pa.nulls(n),
        lambda: pa.array(pick([pa.MonthDayNano([1, 2, 3]), None]), pa.month_day_nano_interval()),
        lambda: pa.array(pick([0.0, 1.5, None]), pa.float64()).cast(pa.float16()) if n else pa.array([], pa.float16()),
    ]
    return rng.choice(makers)()


def _extreme_numbers(rng: random.Random, n: int) -> pa.Array:
    pool = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 2**63, 1e12, 1e12 + 1,
            5e-324, -1.0, None, 123.45]
    return pa.array([rng.choice(pool) for _ in range(n)], pa.float64())


def _mutate_table(rng: random.Random, t: pa.Table) -> tuple[str, pa.Table]:
    """One structural or value mutation of the lines ``t``."""
    names = t.column_names
    kind = rng.choice(["none", "drop", "zero_columns", "zero_rows", "duplicate", "retype", "retype", "extreme",
                       "dates", "dictionary", "huge_string", "rename", "nulls", "null_type", "all_bad", "extra",
                       "chunked", "slice", "text_dates"])
    if kind == "drop":
        gone = rng.sample(names, rng.randint(1, 3))
        t = t.drop_columns(gone)
    elif kind == "zero_columns":
        t = pa.table({}) if rng.random() < 0.5 else pa.Table.from_batches([], pa.schema([]))
    elif kind == "zero_rows":
        t = t.slice(0, 0)
    elif kind == "duplicate":
        name = rng.choice(names)
        other = t.column(name) if rng.random() < 0.5 else _random_type_array(rng, t.num_rows)
        t = t.append_column(name, other)
    elif kind in ("retype", "extra"):
        name = rng.choice(names) if kind == "retype" else f"x{rng.randint(0, 9)}"
        arr = _random_type_array(rng, t.num_rows)
        t = t.set_column(names.index(name), name, arr) if kind == "retype" else t.append_column(name, arr)
        kind = f"{kind}:{name}:{arr.type}"
    elif kind == "extreme":
        for name in rng.sample(["entered_value", "duty_paid", "duty_rate", "quantity", "gross_weight_kg"], 2):
            t = t.set_column(names.index(name), name, _extreme_numbers(rng, t.num_rows))
    elif kind == "dates":
        days = [rng.choice([-2**31, 2**31 - 1, -719162, 2932896, 0, -25567, 109573, 109574, None])
                for _ in range(t.num_rows)]
        t = t.set_column(names.index("entry_date"), "entry_date", pa.array(days, pa.int32()).view(pa.date32()))
    elif kind == "dictionary":
        for name in rng.sample(["importer_id", "hts_code", "port_code", "country_of_origin", "entry_number"], 2):
            col = t.column(name).combine_chunks().dictionary_encode()
            index = rng.choice([pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint64()])
            try:
                t = t.set_column(names.index(name), name, col.cast(pa.dictionary(index, col.type.value_type)))
            except pa.ArrowInvalid:
                t = t.set_column(names.index(name), name, col)
    elif kind == "huge_string":
        name = rng.choice(["importer_id", "hts_code", "entry_number", "country_of_origin", "manufacturer_id"])
        values = t.column(name).to_pylist()
        values[rng.randrange(len(values))] = "9" * rng.choice([65, 1 << 16, 1 << 21])
        t = t.set_column(names.index(name), name, pa.array(values, pa.string()))
    elif kind == "rename":
        name = rng.choice(names)
        t = t.rename_columns([rng.choice(["", " ", "é", "\t", "a,b", '"q"', name.upper(), "x" * 300])
                              if c == name else c for c in names])
    elif kind == "nulls":
        name = rng.choice(names)
        t = t.set_column(names.index(name), name, pa.nulls(t.num_rows, t.schema.field(name).type))
    elif kind == "null_type":
        name = rng.choice(names)
        t = t.set_column(names.index(name), name, pa.nulls(t.num_rows))
    elif kind == "all_bad":
        t = t.set_column(names.index("importer_id"), "importer_id", pa.nulls(t.num_rows, pa.string()))
    elif kind == "text_dates" and "entry_date" in names:
        fmt = rng.choice(["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%y", "%Y%m%d", "%d %b %Y"])
        days = [None if d is None else (d.strftime(fmt) if rng.random() < 0.9 else rng.choice(["", "2025-13-01", "x", "0"]))
                for d in t.column("entry_date").to_pylist()]
        t = t.set_column(names.index("entry_date"), "entry_date", pa.array(days, pa.string()))
        kind = f"text_dates:{fmt}"
    elif kind == "chunked":
        t = pa.concat_tables([t.slice(i, 7) for i in range(0, t.num_rows, 7)])
    elif kind == "slice":
        t = t.slice(rng.randrange(t.num_rows), rng.randint(1, 5))
    return kind, t


def _write_lines(rng: random.Random, t: pa.Table, path: Path, fmt: str) -> None:
    """``t`` as a file of format ``fmt`` at ``path``; a table the format cannot hold is
    written as what the format makes of it (CSV of text), or replaced by raw bytes."""
    try:
        if fmt == "parquet":
            pq.write_table(t, path, row_group_size=rng.choice([7, 64, 1000]))
        elif fmt == "ipc":
            with ipc.new_file(path, t.schema) as w:
                w.write_table(t, max_chunksize=rng.choice([5, 100, 1000]))
        elif fmt == "stream":
            with ipc.new_stream(path, t.schema) as w:
                w.write_table(t)
        else:
            buf = io.BytesIO()
            pacsv.write_csv(t, buf)
            data = buf.getvalue()
            path.write_bytes(_compress(data, fmt))
    except (pa.ArrowException, ValueError, TypeError):
        # Nested or other types CSV/Parquet cannot hold: their text instead.
        rows = t.slice(0, 50)
        columns = [_texts(rows.column(c)) for c in range(rows.num_columns)]
        text = ",".join(t.column_names) + "\n" + "\n".join(",".join(row) for row in zip(*columns))
        data = text.encode("utf-8", "surrogatepass")
        path.write_bytes(_compress(data, fmt))


def _texts(column: pa.ChunkedArray) -> list[str]:
    """Each value as text: Arrow's own cast where it has one (dates past Python's range
    included), else Python's repr, else a placeholder."""
    try:
        return [repr(v) for v in pc.cast(column, pa.string()).to_pylist()]
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        out = []
        for value in column:
            try:
                out.append(repr(value.as_py()))
            except (ValueError, TypeError, OverflowError):
                out.append("?")
        return out


def _compress(csv: bytes, fmt: str) -> bytes:
    """CSV text as the file of ``fmt`` holds it (compressed, or tab-separated)."""
    if fmt == "tsv":
        return csv.replace(b",", b"\t")
    if fmt in ("csv.gz", "csv.bz2", "csv.zst"):
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, {"csv.gz": "gzip", "csv.bz2": "bz2", "csv.zst": "zstd"}[fmt]) as out:
            out.write(csv)
        return sink.getvalue().to_pybytes()
    return csv


def _mutate_bytes(rng: random.Random, path: Path, fmt: str) -> str:
    """One byte-level mutation of the file at ``path``."""
    data = bytearray(path.read_bytes())
    kinds = ["none", "truncate", "flip", "empty", "garbage_tail", "garbage"]
    if fmt in ("csv", "tsv"):
        kinds += ["bom", "crlf", "non_utf8", "quoted_newline", "header_only", "ragged", "nul", "cr_only", "semicolon"]
    kind = rng.choice(kinds)
    if kind == "truncate" and data:
        data = data[:rng.randrange(len(data))]
    elif kind == "flip" and data:
        for _ in range(rng.choice([1, 1, 2, 8, 64])):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "empty":
        data = bytearray()
    elif kind == "garbage_tail":
        data += rng.randbytes(rng.randint(1, 200))
    elif kind == "garbage":
        data = bytearray(rng.randbytes(rng.randint(1, 5000)))
    elif kind == "bom":
        data = bytearray(b"\xef\xbb\xbf") + data
    elif kind == "crlf":
        data = bytearray(bytes(data).replace(b"\n", b"\r\n"))
    elif kind == "cr_only":
        data = bytearray(bytes(data).replace(b"\n", b"\r"))
    elif kind == "non_utf8":
        lines = bytes(data).split(b"\n")
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(lines))
            lines[i] = lines[i] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])
        data = bytearray(b"\n".join(lines))
    elif kind == "quoted_newline":
        lines = bytes(data).split(b"\n")
        i = rng.randrange(1, max(2, len(lines)))
        if i < len(lines):
            lines[i] = b'"a\nb",' + lines[i]
        data = bytearray(b"\n".join(lines))
    elif kind == "header_only":
        data = bytearray(bytes(data).split(b"\n", 1)[0] + b"\n")
    elif kind == "ragged":
        lines = bytes(data).split(b"\n")
        for _ in range(rng.randint(1, 10)):
            i = rng.randrange(len(lines))
            lines[i] = lines[i] + b",extra" * rng.randint(1, 3) if rng.random() < 0.5 else lines[i][: len(lines[i]) // 2]
        data = bytearray(b"\n".join(lines))
    elif kind == "nul":
        i = rng.randrange(len(data) or 1)
        data[i:i] = b"\x00"
    elif kind == "semicolon":
        data = bytearray(bytes(data).replace(b",", b";"))
    path.write_bytes(bytes(data))
    return kind


FORMATS = {"parquet": ".parquet", "ipc": ".arrow", "stream": ".arrows", "csv": ".csv", "csv.gz": ".csv.gz",
           "csv.bz2": ".csv.bz2", "csv.zst": ".csv.zst", "tsv": ".tsv"}


def _job(rng: random.Random, inputs: list[str], base: Base, extra: list[str] | None = None,
         command: str | None = None) -> tuple[str, list[str], list[str]]:
    """A line-reading job (``command``, else a random one) over ``inputs``: its name, argv and outputs."""
    command = command or rng.choice(LINE_JOBS)
    share = ["--max-reject-share", rng.choice(["0.5", "1", "1", "0.9", "0"])]
    if command == "consolidate":
        args, outputs = ["consolidate", *inputs, "-o", "out.parquet", *share], ["out.parquet", "out.rejects.parquet"]
    elif command == "fit":
        args, outputs = ["fit", *inputs, "-o", "out.arrow", *share], ["out.arrow", "out.rejects.parquet"]
    elif command == "score":
        args, outputs = (["score", *inputs, "--model", base.path("model.arrow"), "-o", "out.parquet", *share],
                         ["out.parquet", "out.rejects.parquet"])
    else:
        args, outputs = ["run", *inputs, "-o", "outdir", *share], ["outdir"]
    return command, args + (extra or []), outputs


def case_inputs(rng: random.Random, base: Base) -> Case:
    """A bad input file (or directory of them) read by a random line-reading job (or, for
    scored lines, by evaluate)."""
    fmt = rng.choice(list(FORMATS) + ["dir"])
    scored = rng.random() < 0.12
    try:
        kind, t = _mutate_table(rng, base.scored if scored else base.table)
    except (pa.ArrowException, ValueError, TypeError, OverflowError, KeyError) as exc:  # (a column it lacks)
        kind, t = f"unbuildable:{type(exc).__name__}", base.scored if scored else base.table
    if fmt == "dir":
        parts = [(rng.choice(list(FORMATS)), t.slice(0, t.num_rows // 2)), (rng.choice(list(FORMATS)), t.slice(t.num_rows // 2))]
        name = "in"
    else:
        name = "in" + FORMATS[fmt]
    byte_rng = random.Random(rng.random())
    plain = rng.random() < 0.5  # leave the bytes alone half the time

    def setup(d: Path) -> None:
        if fmt == "dir":
            (d / "in").mkdir()
            for i, (f, part) in enumerate(parts):
                _write_lines(byte_rng, part, d / "in" / f"p{i}{FORMATS[f]}", f)
                if not plain and i == 1:
                    _mutate_bytes(byte_rng, d / "in" / f"p{i}{FORMATS[f]}", f)
            (d / "in" / "_SUCCESS").write_text("")
            (d / "in" / "notes.txt").write_text("not data")
        else:
            _write_lines(byte_rng, t, d / name, fmt)
            if not plain:
                _mutate_bytes(byte_rng, d / name, fmt)
    command = "evaluate" if scored else rng.choice(LINE_JOBS)
    extra = rng.choice([[], [], ["--threads", "2"], ["--map", "importer_id=importer_id"], ["-q"]])
    if kind.startswith("text_dates") or rng.random() < 0.1:
        extra += ["--date-format", rng.choice(["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%y", "%Y%m%d", "%d %b %Y", "%s", "%Y"])]
    if command in ("fit", "run") and rng.random() < 0.25:
        extra += ["--labels", rng.choice(["violation", "violation", "inspected", "scheme", "entered_value", "x0"])]
        if rng.random() < 0.5:
            extra += ["--revenue", rng.choice(["revenue_recovered", "duty_lost", "violation", "importer_id"])]
        if rng.random() < 0.5:
            extra += ["--history-key", rng.choice(["spi", "entry_type", "x0", "x1", "entered_value", "entry_date"])]
    if command == "evaluate":
        by = rng.choice([[], ["--revenue", "revenue_recovered"], ["--by", "port_code"], ["--by", kind.split(":")[1]]
                         if kind.startswith(("retype", "extra")) else []])
        args, outputs = ["evaluate", name, "-o", "eval.json", *by], ["eval.json"]
    else:
        command, args, outputs = _job(rng, [name], base, extra, command)
    # Rows of untouched binary files are known (a CSV's may differ: a quoted field cannot span lines).
    binary = all(f in ("parquet", "ipc", "stream") for f in ([f for f, _ in parts] if fmt == "dir" else [fmt]))
    return Case("inputs", command, f"{fmt}/{kind}/{'plain' if plain else 'bytes'}", args, setup, outputs,
                rejects=outputs[1] if command in ("consolidate", "fit", "score") else None,
                rows=t.num_rows if plain and binary else None)


# Values for options: out of range, not numbers, empty, huge, text of all kinds.
VALUES = ["", "0", "-1", "1", "2", "0.5", "nan", "inf", "-inf", "1e308", "-0", "9223372036854775808",
          "99999999999999999999999", "abc", "%", "%Y", "../x", "é", " ", "1,5", "0x10", "true", "None",
          "2025-02-30", "0000-01-01", "9999-12-31", "-5", "1e-320", "9" * 400, "\u202e", "a=b", "=", "kcs"]


def _option_file(rng: random.Random, kind: str) -> bytes:
    """A random option file of ``kind`` (mapping, config, centers, rules, overrides)."""
    choice = rng.random()
    if choice < 0.15:
        return rng.randbytes(rng.randint(0, 300))
    if choice < 0.25:
        return b""
    if kind == "mapping":
        sections = ["[columns]", "[constants]", "[options]", "[history]", "columns = 3", "[columns.x]", "[other]"]
        keys = ['"importer_id"', '"a"', '""', '"entry_date"', '"line_number"', "date_format", "keys", '"x"']
        vals = ['"importer_id"', '"nope"', "1", "-1", "1e400", "[]", "{}", '"%d/%m/%Y"', '"%"', "true",
                '["a", 1]', '"entry_date"', "nan", '"\\u0000"']
        lines = [rng.choice(sections) if rng.random() < 0.3 else f"{rng.choice(keys)} = {rng.choice(vals)}"
                 for _ in range(rng.randint(1, 8))]
        return "\n".join(lines).encode()
    if kind == "config":
        text = (ROOT / "src" / "ceecore" / "data" / "scoring.toml").read_text().splitlines()
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            if "=" in text[i]:
                key = text[i].split("=")[0]
                value = rng.choice(["-1", "nan", "inf", "1e400", "0", '"x"', "[]", "2147483648", "0.5", "{}", "1e-400"])
                text[i] = f"{key}= {value}"
            elif rng.random() < 0.3:
                text[i] = rng.choice(["[x]", "[[weights]]", "weights = 1", ""])
        return "\n".join(text).encode()
    if kind == "centers":
        rows = ["code,name,field_office"] + [
            ",".join([rng.choice(["001", "011", "", "1", "abc"]), rng.choice(["X", "", "a,b", '"q']), rng.choice(["Y", ""])])
            for _ in range(rng.randint(0, 5))]
        return "\n".join(rows if rng.random() < 0.8 else rows[1:]).encode()
    if kind == "rules":
        rows = ["level,prefix,center,effective_from,effective_to,source"] + [
            ",".join([rng.choice(["chapter", "heading", "x", ""]), rng.choice(["01", "0101", "1", "", "99999999999"]),
                      rng.choice(["001", "099", ""]), rng.choice(["", "2014-03-10", "2014-13-01", "x"]),
                      rng.choice(["", "2010-01-01", "9999-12-31"]), "s"]) for _ in range(rng.randint(0, 5))]
        return "\n".join(rows).encode()
    rows = ["importer_id,center,note"] + [
        f"{rng.choice(['A', '', 'x' * 100, 'é'])},{rng.choice(['001', '011', '', '1'])},{rng.choice(['n', ''])}"
        for _ in range(rng.randint(0, 5))]
    return "\n".join(rows).encode()


OPTION_POOLS = {
    "consolidate": ["--assign-by", "--overrides", "--centers-file", "--hts-map", "--replace-map", "--preset",
                    "--mapping", "--map", "--date-format", "--pseudonymise", "--max-reject-share", "--threads",
                    "--state", "--rejects", "--bogus"],
    "fit": ["--labels", "--revenue", "--history-key", "--config", "--preset", "--mapping", "--map", "--date-format",
            "--pseudonymise", "--max-reject-share", "--threads", "--rejects"],
    "score": ["--preset", "--mapping", "--map", "--date-format", "--pseudonymise", "--max-reject-share", "--threads",
              "--rejects"],
    "run": ["--labels", "--revenue", "--history-key", "--config", "--preset", "--mapping", "--map", "--date-format",
            "--pseudonymise", "--max-reject-share", "--threads", "--show-ids"],
    "evaluate": ["--label", "--revenue", "--score", "--by"],
    "generate": ["-n", "--accounts", "--start", "--end", "--seed", "--scheme-rate", "--inspect-share", "--dirty",
                 "--batch-rows", "--file-rows", "--truth", "--variants", "--threads"],
    "centers": ["--on", "--rules", "--centers-file", "--hts-map", "--replace-map"],
    "merge": [],
}
FLAGS = {"--replace-map", "--show-ids", "--variants", "--rules", "-q"}
FILE_OPTIONS = {"--overrides": "overrides", "--centers-file": "centers", "--hts-map": "rules", "--mapping": "mapping",
                "--config": "config"}
COLUMNS = ["violation", "inspected", "revenue_recovered", "importer_id", "score", "center", "nope", "entry_date",
           "scheme", "", "reasons", "hts_code", "duty_lost"]


def _option_value(rng: random.Random, option: str, files: dict[str, bytes]) -> list[str]:
    if option in FLAGS:
        return [option]
    if option in FILE_OPTIONS:
        name = f"opt{len(files)}.{'toml' if option in ('--mapping', '--config') else 'csv'}"
        files[name] = _option_file(rng, FILE_OPTIONS[option])
        return [option, name]
    if option == "--pseudonymise":
        name = f"key{len(files)}"
        files[name] = rng.choice([b"", b"short", rng.randbytes(32), rng.randbytes(16), rng.randbytes(15)])
        return [option, name]
    if option in ("--labels", "--revenue", "--history-key", "--label", "--score", "--by"):
        return [option, rng.choice(COLUMNS + VALUES[:6])]
    if option in ("--map", "--scheme-rate"):
        left = rng.choice(COLUMNS + ["all", "undervaluation", "x y"])
        return [option, rng.choice([f"{left}={rng.choice(COLUMNS + VALUES[:10])}", left, "=", ""])]
    if option in ("--state", "--rejects", "--truth"):
        return [option, rng.choice(["s.arrow", "r.parquet", "t.parquet", "x.csv", "", "out.parquet"])]
    if option in ("-n", "--dirty", "--accounts"):
        return [option, rng.choice(VALUES + ["3", "50", "200", "100000000000", "100000000001"])]
    return [option, rng.choice(VALUES)]


def case_options(rng: random.Random, base: Base) -> Case:
    """Random options and option files for a random command, on good inputs."""
    command = rng.choice(["consolidate", "fit", "score", "run", "evaluate", "generate", "centers", "merge"])
    files: dict[str, bytes] = {}
    pool = OPTION_POOLS[command]
    chosen = [rng.choice(pool) for _ in range(rng.randint(1, 4))] if pool else []
    extra = [v for option in chosen for v in _option_value(rng, option, files)]
    lines = base.path("lines.parquet")
    outputs: list[str] = []
    if command in LINE_JOBS:
        _, args, outputs = _job(rng, [lines], base, extra, command)
        if "--state" in extra:
            outputs.append(extra[extra.index("--state") + 1])
        if "--rejects" in extra:
            outputs[1] = extra[extra.index("--rejects") + 1]
    elif command == "evaluate":
        args, outputs = ["evaluate", base.path("scored.parquet"), "-o", "eval.json", *extra], ["eval.json"]
    elif command == "generate":
        if "-n" not in extra:
            extra = ["-n", rng.choice(["0", "1", "10", "500"]), *extra]
        out = rng.choice(["g.parquet", "g.csv", "g.csv.gz", "g.arrow", "gdir", "g.txt", "g.tsv"])
        args, outputs = ["generate", "-o", out, "-q", *extra], [out]
        if "--truth" in extra:
            outputs.append(extra[extra.index("--truth") + 1])
    elif command == "centers":
        args = ["centers", *extra]
    else:
        models = rng.sample([base.path(m) for m in ("model.arrow", "model_other.arrow", "model_pn.arrow")],
                            rng.randint(1, 3))
        args, outputs = ["merge", *models, "-o", "merged.arrow"], ["merged.arrow"]

    def setup(d: Path) -> None:
        for name, data in files.items():
            (d / name).write_bytes(data)
    rejects = outputs[1] if command in ("consolidate", "fit", "score") else None
    return Case("options", command, " ".join(a for a in chosen) or "-", args, setup, outputs, rejects=rejects,
                rows=base.rows)


def case_models(rng: random.Random, base: Base) -> Case:
    """A hostile, foreign or mismatched model file for score or merge."""
    kind = rng.choice(["flip", "flip", "truncate", "garbage_tail", "empty", "swap", "swap", "config", "keys",
                       "json_edit", "zero_page", "dup"])
    source = rng.choice(["model.arrow", "model_pn.arrow", "model_other.arrow"])
    raw = Path(base.path(source)).read_bytes()
    data = bytearray(raw)
    env: dict[str, str] = {}
    swap = None
    if kind == "flip":
        for _ in range(rng.choice([1, 2, 4, 32])):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[:rng.randrange(len(data))]
    elif kind == "garbage_tail":
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == "empty":
        data = bytearray()
    elif kind == "swap":
        swap = rng.choice(["lines.parquet", "state.arrow", "scored.parquet", "accounts.parquet", "config.toml", "key"])
        data = bytearray(Path(base.path(swap)).read_bytes())
    elif kind == "json_edit":
        text = bytes(data)
        digits = [m.start() for m in re.finditer(rb'"[a-z_]+": ?-?[0-9]', text)]
        if digits:
            i = rng.choice(digits)
            j = text.index(b":", i) + 1
            data[j:j + 1] = rng.choice([b"-", b"9", b"1e999,", b" null", b'"x"', b"["])
    elif kind == "zero_page":
        i = rng.randrange(len(data))
        data[i:i + 4096] = bytes(len(data[i:i + 4096]))
    command = rng.choice(["score", "score", "merge"])
    key_opt: list[str] = []
    if kind == "keys" or rng.random() < 0.2:
        key_opt = rng.choice([["--pseudonymise", base.path("key")], ["--pseudonymise", base.path("other.key")], []])
        if rng.random() < 0.2:
            env["CEECORE_PSEUDONYM_KEY"] = rng.choice(["x" * 16, "short", ""])
    name = f"{kind}:{source}" + (f":{swap}" if swap else "")

    def setup(d: Path) -> None:
        (d / "m.arrow").write_bytes(bytes(data))
    if command == "score":
        args = ["score", base.path("lines.parquet"), "--model", "m.arrow", "-o", "out.parquet", *key_opt]
        outputs = ["out.parquet", "out.rejects.parquet"]
    else:
        others = [base.path(m) for m in rng.sample(["model.arrow", "model_pn.arrow", "model_other.arrow"], rng.randint(0, 2))]
        models = ["m.arrow", *others] if kind != "dup" else ["m.arrow", "m.arrow"]
        rng.shuffle(models)
        args, outputs = ["merge", *models, "-o", "merged.arrow"], ["merged.arrow"]
    return Case("models", command, name, args, setup, outputs, env=env)


def case_paths(rng: random.Random, base: Base) -> Case:
    """Outputs and inputs at awkward places: the same file, missing or read-only
    directories, symlinks, fifos, devices, odd names, files of another kind."""
    lines = Path(base.path("lines.parquet"))
    kind = rng.choice(["out_is_input", "rejects_is_input", "rejects_is_out", "missing_dir", "readonly_dir",
                       "symlink_to_input", "dangling_symlink", "out_is_dir", "out_is_fifo", "long_name", "odd_name",
                       "input_fifo", "input_devnull", "unreadable_input", "input_dir_empty", "run_dir_holds_other",
                       "run_out_is_file", "state_is_input", "truth_is_out", "eval_out_is_input", "input_twice",
                       "symlink_dir", "out_in_input_dir", "unreadable_dir", "out_is_device", "rejects_is_device",
                       "read_device", "symlink_loop", "dir_with_fifo", "out_parent_is_file", "hardlink_to_input",
                       "odd_input_name", "input_symlink_to_dir"])
    odd = rng.choice(["a b.parquet", "é ü.parquet", "new\nline.parquet", "-x.parquet", "tab\t.parquet", "x" * 250 + ".parquet",
                      "\u202eevil.parquet", " .parquet", "a:b.parquet"])
    command = rng.choice(LINE_JOBS)
    unprivileged = False
    out = {"consolidate": "out.parquet", "fit": "out.arrow", "score": "out.parquet", "run": "outdir"}[command]
    inputs = ["in.parquet"]
    ops: list[Callable[[Path], None]] = [lambda d: shutil.copy(lines, d / "in.parquet")]
    if kind == "out_is_input":
        out = "in.parquet" if command != "fit" else "in.arrow"
        if command == "fit":
            ops.append(lambda d: shutil.copy(base.path("model.arrow"), d / "in.arrow"))
            inputs = ["in.arrow"]
    elif kind == "missing_dir":
        out = "no/such/dir/" + out
    elif kind == "readonly_dir":
        out, unprivileged = "ro/" + out, True
        ops.append(lambda d: (d / "ro").mkdir(mode=0o555))
    elif kind == "symlink_to_input":
        out = "link" + Path(out).suffix
        ops.append(lambda d: os.symlink("in.parquet", d / ("link" + Path(out).suffix)))
    elif kind == "dangling_symlink":
        out = "dangle" + Path(out).suffix
        ops.append(lambda d: os.symlink("nowhere/x", d / ("dangle" + Path(out).suffix)))
    elif kind == "out_is_dir":
        ops.append(lambda d: (d / out).mkdir(exist_ok=True) or (d / out / "keep.txt").write_text("keep"))
    elif kind == "out_is_fifo":
        ops.append(lambda d: os.mkfifo(d / out))
    elif kind == "long_name":
        out = "y" * 300 + Path(out).suffix
    elif kind == "odd_name":
        out = odd if command != "fit" else odd.replace(".parquet", ".arrow")
        if command == "run":
            out = odd.replace(".parquet", "")
    elif kind in ("out_is_device", "rejects_is_device"):
        ops.append(lambda d: os.mknod(d / "nul.parquet", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
        if kind == "out_is_device" and command != "run":
            out = "nul.parquet" if command != "fit" else "nul.arrow"
            ops.append(lambda d: os.mknod(d / "nul.arrow", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
    elif kind == "read_device":
        device = rng.choice(["/dev/zero", "/dev/urandom", "/dev/null", "/dev/full"])
        option = rng.choice(["--pseudonymise", "--mapping", "--config", "--model", "input"])
        command = "score" if option == "--model" else ("fit" if option == "--config" else command)
        inputs = [device] if option == "input" else inputs
    elif kind == "symlink_loop":
        inputs = ["loop.parquet", "data"]
        ops.append(lambda d: os.symlink("loop.parquet", d / "loop.parquet"))
        ops.append(lambda d: (d / "data").mkdir())
        ops.append(lambda d: shutil.copy(lines, d / "data" / "a.parquet"))
        ops.append(lambda d: os.symlink("..", d / "data" / "up"))
        inputs = rng.choice([["loop.parquet"], ["data"]])
    elif kind == "dir_with_fifo":
        inputs = ["data"]
        ops.append(lambda d: (d / "data").mkdir())
        ops.append(lambda d: shutil.copy(lines, d / "data" / "a.parquet"))
        ops.append(lambda d: os.mkfifo(d / "data" / "b.parquet"))
    elif kind == "out_parent_is_file":
        out = "in.parquet/" + out
    elif kind == "hardlink_to_input":
        out = "hard" + (Path(out).suffix or ".parquet")
        if command == "run":
            command, out = "consolidate", "hard.parquet"
        ops.append(lambda d: os.link(d / "in.parquet", d / out))
    elif kind == "odd_input_name":
        name = "./" + odd if odd.startswith("-") else odd if len(odd) < 255 else "x" * 240 + ".parquet"
        inputs = [name]
        ops.append(lambda d: shutil.copy(lines, d / name))
    elif kind == "input_symlink_to_dir":
        inputs = ["ln"]
        ops.append(lambda d: (d / "data").mkdir())
        ops.append(lambda d: shutil.copy(lines, d / "data" / "a.parquet"))
        ops.append(lambda d: os.symlink("data", d / "ln"))
    elif kind == "input_fifo":
        inputs = ["fifo.parquet"]
        ops.append(lambda d: os.mkfifo(d / "fifo.parquet"))
    elif kind == "input_devnull":
        inputs = ["/dev/null"]
    elif kind == "unreadable_input":
        unprivileged = True
        ops.append(lambda d: os.chmod(d / "in.parquet", 0))
    elif kind == "unreadable_dir":
        unprivileged = True
        inputs = ["data"]
        ops.append(lambda d: (d / "data" / "sub").mkdir(parents=True))
        ops.append(lambda d: shutil.copy(lines, d / "data" / "a.parquet"))
        ops.append(lambda d: shutil.copy(lines, d / "data" / "sub" / "b.parquet"))
        ops.append(lambda d: os.chmod(d / "data" / "sub", 0))
    elif kind == "input_dir_empty":
        inputs = ["empty"]
        ops.append(lambda d: (d / "empty").mkdir())
    elif kind == "run_dir_holds_other":
        command, out = "run", "outdir"
        ops.append(lambda d: (d / "outdir").mkdir() or (d / "outdir" / "mine.txt").write_text("mine"))
    elif kind == "run_out_is_file":
        command, out = "run", "afile"
        ops.append(lambda d: (d / "afile").write_text("precious"))
    elif kind == "input_twice":
        inputs = ["in.parquet", "in.parquet", "."]
    elif kind == "symlink_dir":
        command, out = "run", "linkdir"
        ops.append(lambda d: (d / "real").mkdir())
        ops.append(lambda d: os.symlink("real", d / "linkdir"))
    elif kind == "out_in_input_dir":
        inputs = ["data"]
        out = "data/" + out
        ops.append(lambda d: (d / "data").mkdir())
        ops.append(lambda d: shutil.copy(lines, d / "data" / "a.parquet"))
    if kind in ("rejects_is_input", "rejects_is_out", "state_is_input", "rejects_is_device") and command == "run":
        command, out = "consolidate", "out.parquet"
    if kind == "truth_is_out":
        command = "generate"
    if kind == "eval_out_is_input":
        command = "evaluate"

    def setup(d: Path) -> None:
        for op in ops:
            op(d)

    outputs = [out]
    if command == "consolidate":
        args = ["consolidate", *inputs, "-o", out]
        if kind == "rejects_is_input":
            args += ["--rejects", inputs[0]]
        elif kind == "rejects_is_out":
            args += ["--rejects", out]
        elif kind == "state_is_input":
            args += ["--state", "in.arrow"]
            ops.append(lambda d: shutil.copy(base.path("state.arrow"), d / "in.arrow"))
            outputs.append("in.arrow")
        outputs.append(str(Path(out).with_suffix("")) + ".rejects.parquet")
    elif command == "fit":
        args = ["fit", *inputs, "-o", out]
        outputs.append(str(Path(out).with_suffix("")) + ".rejects.parquet")
        if kind == "rejects_is_input":
            args += ["--rejects", inputs[0]]
        elif kind == "rejects_is_out":
            args += ["--rejects", out]
    elif command == "score":
        args = ["score", *inputs, "--model", base.path("model.arrow"), "-o", out]
        outputs.append(str(Path(out).with_suffix("")) + ".rejects.parquet")
        if kind == "rejects_is_input":
            args += ["--rejects", inputs[0]]
        elif kind == "rejects_is_out":
            args += ["--rejects", out]
    elif command == "run":
        args = ["run", *inputs, "-o", out]
    elif command == "generate":
        out = rng.choice(["g.parquet", "gdir"])
        truth = rng.choice([out, out + "/t.parquet", "in.parquet"])
        args, outputs = ["generate", "-n", "100", "-o", out, "--truth", truth, "-q"], [out, truth]
    else:
        report = rng.choice(["in.parquet", "in.json", ".", "new.json"])
        args, outputs = ["evaluate", "in.parquet", "-o", report], [report]
        ops.append(lambda d: shutil.copy(base.path("scored.parquet"), d / "in.parquet"))
        ops.append(lambda d: (d / "in.json").write_text("{}"))
    if kind == "rejects_is_device" and command in ("consolidate", "fit", "score"):
        args += ["--rejects", "nul.parquet"]
    if kind == "read_device" and option != "input":
        if option == "--model":
            args[args.index("--model") + 1] = device
        elif command in LINE_JOBS:
            args += [option, device]
    return Case("paths", command, kind, args, setup, outputs, unprivileged=unprivileged)


MAKERS = {"inputs": case_inputs, "options": case_options, "models": case_models, "paths": case_paths}


def make_case(seed: int, index: int, base: Base) -> Case:
    """Case ``index`` of the sweep of ``seed``: categories in turn, each case from its own stream."""
    category = CATEGORIES[index % len(CATEGORIES)]
    return MAKERS[category](random.Random(f"{seed}:{index}"), base)


# ----------------------------------------------------------------- running, judging

@dataclass
class Outcome:
    index: int
    case: Case
    verdict: str  # OK, CLEAN or FAIL
    why: str = ""
    said: str = ""  # the last line on stderr


def _snapshot(d: Path) -> dict[str, tuple]:
    """Every path under ``d``: its kind and, for a regular file, its content hash."""
    found: dict[str, tuple] = {}
    for folder, dirs, names in os.walk(d):
        for n in dirs + names:
            p = Path(folder, n)
            rel = str(p.relative_to(d))
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                try:
                    found[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                except PermissionError:
                    found[rel] = ("file", "unreadable")
            elif stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(p))
            else:
                found[rel] = (stat.S_IFMT(st.st_mode), None)
    return found


def _unlock(d: Path) -> None:
    for folder, dirs, _ in os.walk(d):
        for n in dirs:
            p = Path(folder, n)
            if not p.is_symlink():
                os.chmod(p, 0o755)


def _outputs_readable(d: Path, outputs: list[str]) -> str:
    """Why an output of a successful job cannot be read, or ""."""
    for out in outputs:
        p = d / out
        if not p.exists():
            return f"output {out} missing after exit 0"
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        for f in files:
            try:
                name = f.name.lower()
                if name.endswith((".parquet", ".pq")):
                    pq.read_table(f)
                elif name.endswith((".arrow", ".ipc", ".feather")):
                    with pa.memory_map(str(f)) as src:
                        ipc.open_file(src).read_all()
                elif name.endswith(".json"):
                    json.loads(f.read_bytes().decode("utf-8"))
                elif name.endswith(".csv"):
                    pacsv.read_csv(f)
                elif name.endswith(".gz"):
                    gzip.decompress(f.read_bytes()).decode("utf-8")
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                return f"output {f.relative_to(d)} unreadable: {type(exc).__name__}: {exc}"[:300]
    return ""


def _counts_hold(case: Case, d: Path, stdout: str) -> str:
    """Why rows read != accepted + rejected for a successful line job, or ""."""
    if case.command not in LINE_JOBS:
        return ""
    if case.command == "run":
        out = d / case.outputs[0]
        s = json.loads((out / "summary.json").read_text())
        if case.rows is not None and s["rows_read"] != case.rows:
            return f"read {s['rows_read']} rows of {case.rows}"
        if s["rows_read"] != s["lines_scored"] + s["rejected"]:
            return f"summary: rows_read {s['rows_read']} != {s['lines_scored']} + {s['rejected']}"
        if pq.read_metadata(out / "lines.parquet").num_rows != s["lines_scored"]:
            return "lines.parquet rows != lines_scored"
        if pq.read_metadata(out / "rejects.parquet").num_rows != s["rejected"]:
            return "rejects.parquet rows != rejected"
        return ""
    m = COUNTS.search(stdout)
    if m is None:
        return "" if "-q" in case.args else "no counts printed"
    read, accepted, rejected = (int(g.replace(",", "")) for g in m.groups())
    if read != accepted + rejected:
        return f"read {read} != {accepted} accepted + {rejected} rejected"
    if case.rows is not None and read != case.rows:
        return f"read {read} rows of {case.rows}"
    if case.rejects and pq.read_metadata(d / case.rejects).num_rows != rejected:
        return f"rejects file rows != {rejected}"
    if case.command == "score" and pq.read_metadata(d / case.outputs[0]).num_rows != accepted:
        return f"scored rows != {accepted} accepted"
    return ""


def judge(case: Case, d: Path, before: dict[str, tuple], proc: subprocess.CompletedProcess[bytes] | None) -> str:
    """Why the run of ``case`` is a FAIL, or "" if it is OK or CLEAN."""
    if proc is None:
        return f"timeout after {TIMEOUT:.0f} s"
    if proc.returncode < 0:
        return f"killed by signal {-proc.returncode}"
    try:
        out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    except UnicodeDecodeError:
        return "stdout or stderr is not UTF-8"
    if CONTROL.search(out) or CONTROL.search(err):
        return f"control character in the output: {(CONTROL.search(out) or CONTROL.search(err)).group()!r}"
    if "Traceback" in out or "Traceback" in err:
        return "traceback: " + err.strip().splitlines()[-1][:200] if err.strip() else "traceback"
    if proc.returncode not in (0, 2):
        return f"exit code {proc.returncode}: {err.strip()[-200:]}"
    if proc.returncode == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ours = [ln for ln in lines if ln.startswith("error: ")]
        usage = any(ln.startswith("Error: ") for ln in lines)
        if not usage and not (len(ours) == 1 and len(lines) == 1):
            return f"exit 2 without a one-line error: {err.strip()[:200]!r}"
    _unlock(d)
    after = _snapshot(d)
    for rel, what in before.items():
        declared = any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in case.outputs)
        if declared and proc.returncode == 0:
            continue
        if after.get(rel) != what:
            return f"{'modified' if rel in after else 'deleted'}: {rel}"
    staging = [rel for rel in after if STAGING.match(Path(rel).name)]
    if staging:
        return f"staging left behind: {staging[0]}"
    new = [rel for rel in after if rel not in before]
    if proc.returncode == 2:
        written = [rel for rel in new if any(rel == o or rel.startswith(o + "/") for o in case.outputs)]
        if written:
            return f"exit 2 but output written: {written[0]}"
        return ""
    bad = _outputs_readable(d, case.outputs)
    if bad:
        return bad
    try:
        return _counts_hold(case, d, out)
    except Exception as exc:  # noqa: BLE001
        return f"counts unreadable: {type(exc).__name__}: {exc}"[:300]


def run_case(index: int, case: Case, root: Path, keep: bool = False) -> Outcome:
    d = Path(tempfile.mkdtemp(prefix=f"case{index}-", dir=root))
    try:
        try:
            case.setup(d)
        except (OSError, pa.ArrowException) as exc:
            return Outcome(index, case, "SKIP", f"setup: {exc}")
        before = _snapshot(d)
        try:
            proc = _cli(case.args, d, unprivileged=case.unprivileged, env=case.env)
        except subprocess.TimeoutExpired:
            proc = None
        why = judge(case, d, before, proc)
        verdict = "FAIL" if why else ("OK" if proc is not None and proc.returncode == 0 else "CLEAN")
        if keep:
            print(f"case dir: {d}")
            if proc is not None:
                sys.stdout.write(proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace"))
        said = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if proc is not None else []
        return Outcome(index, case, verdict, why, said[0][:300] if said else "")
    finally:
        if not keep:
            _unlock(d)
            shutil.rmtree(d, ignore_errors=True)


def sweep(cases: int, seed: int, jobs: int = 2, only: list[int] | None = None, keep: bool = False,
          root: Path | None = None) -> list[Outcome]:
    """Runs cases ``0..cases-1`` (or ``only``) of the sweep of ``seed``."""
    root = Path(tempfile.mkdtemp(prefix="ceecore-sweep-", dir=root))
    os.chmod(root, 0o755)
    try:
        base = build_base(root / "base", seed)
        for p in [root / "base", *(root / "base").iterdir()]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        indices = only if only is not None else list(range(cases))
        made = [(i, make_case(seed, i, base)) for i in indices]
        with ThreadPoolExecutor(jobs) as pool:
            return list(pool.map(lambda ic: run_case(ic[0], ic[1], root, keep), made))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def report(outcomes: list[Outcome], seed: int) -> str:
    table: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        table[o.case.category][o.verdict] += 1
        table[f"  {o.case.command}"][o.verdict] += 1
    lines = [f"{'':<16}{'cases':>7}{'OK':>7}{'CLEAN':>7}{'FAIL':>7}{'SKIP':>7}"]
    for group in (CATEGORIES, [f"  {c}" for c in (*LINE_JOBS, "merge", "evaluate", "generate", "centers")]):
        for name in group:
            c = table.get(name, Counter())
            lines.append(f"{name:<16}{sum(c.values()):>7}{c['OK']:>7}{c['CLEAN']:>7}{c['FAIL']:>7}{c['SKIP']:>7}")
    total = Counter(o.verdict for o in outcomes)
    lines.append(f"{'total':<16}{len(outcomes):>7}{total['OK']:>7}{total['CLEAN']:>7}{total['FAIL']:>7}{total['SKIP']:>7}")
    for o in outcomes:
        if o.verdict in ("FAIL", "SKIP"):
            lines.append(f"{o.verdict} case {o.index} [{o.case.category}/{o.case.command}: {o.case.name!r}]: {o.why}")
            lines.append(f"  repro: python3 tests/adversarial/sweep.py --seed {seed} --case {o.index} --keep"
                         f"   # ceecore {shlex.join(o.case.args)}"[:600])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--case", type=int, action="append", help="run only this case (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the case directories and print their output")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case and its message")
    opts = parser.parse_args()
    outcomes = sweep(opts.cases, opts.seed, opts.jobs, opts.case, opts.keep)
    if opts.verbose:
        for o in outcomes:
            print(f"{o.index:>5} {o.verdict:<5} {o.case.category}/{o.case.command} {o.case.name!r}: {o.said}")
    print(report(outcomes, opts.seed))
    sys.exit(1 if any(o.verdict == "FAIL" for o in outcomes) else 0)


if __name__ == "__main__":
    main()
