"""Output sets, colliding paths and exit codes (issue 11, findings 6-8).

A job's outputs appear as one set or not at all, even when the job is killed (SIGKILL
or SIGTERM at random, seeded moments, in real processes); staging is never read as
input and is cleaned up by the next run; outputs that would destroy a file are refused
before any work; every failure is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import io, synth
from ceecore.io import OutputSet, check_outputs, open_sources, output_format, swap_directory
from ceecore_cli.main import cli
from tests.processes import cli_env

ENV = cli_env()
KILL_LINES = 300_000


def invoke(*args: object, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


def one_error(result, *fragments: str) -> str:
    """The message of a failed command: one ``error:`` line naming ``fragments``."""
    message = result.stderr
    assert message.startswith("error: ") and message.count("\n") == 1, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def digest(path: Path) -> str | None:
    """A file's content hash (None if missing); summary.json without its timings and directory."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if path.name == "summary.json":
        doc = json.loads(data)
        doc.pop("seconds")
        doc["outputs"] = sorted(doc["outputs"])  # (where the reference ran)
        data = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def dir_state(directory: Path) -> tuple | None:
    """What a reader of ``directory`` sees: its files and their hashes (None: no directory)."""
    if not directory.is_dir():
        return None
    return tuple((p.name, digest(p)) for p in sorted(directory.iterdir()))


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    """Two different inputs of KILL_LINES lines, and a small one."""
    d = tmp_path_factory.mktemp("inputs")
    synth.write(d / "a.parquet", lines=KILL_LINES, seed=1, batch_rows=1 << 16)
    synth.write(d / "b.parquet", lines=KILL_LINES, seed=2, batch_rows=1 << 16)
    synth.write(d / "small.parquet", lines=3_000, seed=3)
    return SimpleNamespace(a=d / "a.parquet", b=d / "b.parquet", small=d / "small.parquet", dir=d)


def ceecore_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "ceecore", *map(str, args)]


def complete(*args: object) -> float:
    """Runs a command to its end (it must succeed); its duration."""
    started = time.perf_counter()
    proc = subprocess.run(ceecore_cmd(*args), env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - started


def kill_at_random(args: list[object], rng: random.Random, duration: float) -> tuple[int, int, int]:
    """Starts a command, kills it (SIGKILL or SIGTERM) at a random moment of its run;
    the signal, its exit code and its pid."""
    proc = subprocess.Popen(ceecore_cmd(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(rng.uniform(0.25 * duration, 1.05 * duration))
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return sig, proc.returncode, proc.pid


def check_terminated(sig: int, code: int, pid: int, parent: Path) -> None:
    """A SIGTERM the job caught ends it with 143 and removes its staging."""
    if sig == signal.SIGTERM and code not in (0, -signal.SIGTERM):  # (finished first / still starting up)
        assert code == 128 + signal.SIGTERM
        assert not [n for n in hidden(parent) if f".{pid}." in n], hidden(parent)
    if sig == signal.SIGKILL:
        assert code in (0, -signal.SIGKILL)


# ------------------------------------------------------------------ finding 6: sets under kills


def test_run_killed_at_random_moments_leaves_the_old_or_the_new_set(tmp_path, inputs):
    refs = {}
    durations = []
    for name in ("a", "b"):
        durations.append(complete("run", getattr(inputs, name), "-o", tmp_path / "ref" / name, "-q", "--threads", 2))
        refs[name] = dir_state(tmp_path / "ref" / name)
    assert refs["a"] != refs["b"]
    parent = tmp_path / "jobs"
    out = parent / "out"
    shutil.copytree(tmp_path / "ref" / "a", out)
    current = dir_state(out)
    rng = random.Random(6)
    for i in range(6):
        name = "b" if i % 2 == 0 else "a"
        sig, code, pid = kill_at_random(["run", getattr(inputs, name), "-o", out, "-q", "--threads", 2],
                                        rng, max(durations))
        after = dir_state(out)
        assert after in (current, refs[name]), (i, sig, code)
        check_terminated(sig, code, pid, parent)
        # Whatever a kill left is hidden: a directory input of the parent sees only the set.
        sources, _ = open_sources(parent)
        assert sorted(Path(s.name).name for s in sources) == sorted(
            n for n in ceecore.pipeline.RUN_OUTPUTS if n.endswith((".parquet", ".arrow")))
        current = after
    # The next run of the job removes what killed runs left.
    complete("run", inputs.b, "-o", out, "-q", "--threads", 2)
    assert dir_state(out) == refs["b"]
    assert hidden(parent) == []


def test_consolidate_killed_at_random_moments_leaves_the_old_or_the_new_set(tmp_path, inputs):
    parent = tmp_path / "jobs"
    parent.mkdir()
    names = ("acc.parquet", "rej.parquet", "st.arrow")

    def args(src: Path, where: Path) -> list[object]:
        return ["consolidate", src, "-o", where / names[0], "--rejects", where / names[1], "--state",
                where / names[2], "-q", "--threads", 2]

    def state(where: Path) -> tuple:
        return tuple(digest(where / n) for n in names)

    refs, durations = {}, []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        durations.append(complete(*args(getattr(inputs, name), tmp_path / name)))
        refs[name] = state(tmp_path / name)
    for n in names:
        shutil.copy(tmp_path / "a" / n, parent / n)
    current = state(parent)
    assert current == refs["a"] != refs["b"]
    rng = random.Random(7)
    for i in range(6):
        name = "b" if i % 2 == 0 else "a"
        sig, code, pid = kill_at_random(args(getattr(inputs, name), parent), rng, max(durations))
        after = state(parent)
        assert after in (current, refs[name]), (i, sig, code)
        check_terminated(sig, code, pid, parent)
        current = after
    complete(*args(inputs.b, parent))
    assert state(parent) == refs["b"] and hidden(parent) == []


def test_generate_dataset_killed_at_random_moments_is_never_missing_nor_read_half(tmp_path):
    parent = tmp_path / "gen"
    target = parent / "data"

    def args(seed: int, where: Path) -> list[object]:
        return ["generate", "-n", KILL_LINES, "--seed", seed, "--batch-rows", 30_000, "--file-rows", 60_000,
                "-o", where, "-q", "--threads", 2]

    refs, durations = {}, []
    for seed in (1, 2):
        durations.append(complete(*args(seed, tmp_path / "ref" / str(seed))))
        refs[seed] = dir_state(tmp_path / "ref" / str(seed))
    shutil.copytree(tmp_path / "ref" / "1", target)
    current = dir_state(target)
    assert current == refs[1] != refs[2]
    rng = random.Random(8)
    for i in range(5):
        seed = 2 if i % 2 == 0 else 1
        sig, code, pid = kill_at_random(args(seed, target), rng, max(durations))
        after = dir_state(target)
        assert after in (current, refs[seed]), (i, sig, code)  # never missing, never mixed
        check_terminated(sig, code, pid, parent)
        # A following job reading the parent reads the visible lines only, not staged parts.
        run = ceecore.run_consolidation(str(parent))
        assert run.stats.rows_read == KILL_LINES
        current = after
    complete(*args(2, target))
    assert dir_state(target) == refs[2] and hidden(parent) == []


def test_sigterm_removes_staging_and_exits_143(tmp_path, inputs):
    """A job stopped by SIGTERM cleans up as after Ctrl-C: no staging left, no output."""
    out = tmp_path / "out"
    proc = subprocess.Popen(ceecore_cmd("run", inputs.a, inputs.b, "-o", out, "-q", "--threads", 1), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not hidden(tmp_path) and time.monotonic() < deadline:  # the staging directory exists: mid-job
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert b"Traceback" not in err
    assert listing(tmp_path) == []


def test_sigterm_during_generated_code_still_exits_143(tmp_path):
    """CPython remembers an interrupt that ended code run from a string (a dataclass being
    made, say) even once caught, and a ``python -m`` process then dies of SIGINT (-2, seen
    in CI when SIGTERM landed there); the job still exits 143."""
    (tmp_path / "interrupted_job.py").write_text(
        "from ceecore_cli.main import _exit_terminated\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt', {})  # as _terminate raises it inside generated code\n"
        "except KeyboardInterrupt:\n"
        "    _exit_terminated()\n")
    proc = subprocess.run([sys.executable, "-m", "interrupted_job"], cwd=tmp_path, env=ENV, capture_output=True)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.decode()


# ------------------------------------------------------------------ finding 6: the pieces


def test_directory_inputs_skip_hidden_and_underscore_names_at_any_depth(tmp_path, inputs):
    table = pq.read_table(inputs.small)
    d = tmp_path / "in"
    for rel in ("a.parquet", "sub/b.parquet", ".c.parquet", "_d.parquet", ".staging/e.parquet",
                "_tmp/f.parquet", "sub/.g.parquet.123.abcdef01.tmp", "sub/_SUCCESS", "sub/.x/deep/h.parquet",
                "sub/ok/_y/i.parquet"):
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    sources, _ = open_sources(d)
    assert [Path(s.name).relative_to(d).as_posix() for s in sources] == ["a.parquet", "sub/b.parquet"]
    # Given by name, a hidden file or a folder under a hidden one is read (the user asked for it).
    assert [s.name for s in open_sources(d / ".c.parquet")[0]] == [str(d / ".c.parquet")]
    assert len(open_sources(d / ".staging")[0]) == 1


def test_output_set_moves_in_in_order_only_on_commit(tmp_path, monkeypatch):
    (tmp_path / "main.parquet").write_text("old main")
    with pytest.raises(RuntimeError), OutputSet() as outputs:
        outputs.file(tmp_path / "side.txt").write_text("new side")
        outputs.file(tmp_path / "main.parquet").write_text("new main")
        raise RuntimeError("the job failed")
    assert listing(tmp_path) == ["main.parquet"] and (tmp_path / "main.parquet").read_text() == "old main"
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(io.os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b))[1])
    with OutputSet() as outputs:
        outputs.file(tmp_path / "side.txt").write_text("new side")
        outputs.file(tmp_path / "main.parquet").write_text("new main")
    monkeypatch.undo()
    assert moved == ["side.txt", "main.parquet"]  # the main output last
    assert listing(tmp_path) == ["main.parquet", "side.txt"]


def test_a_failed_rename_leaves_no_temporaries(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("a directory where a file should go")
    outputs = OutputSet()
    outputs.file(tmp_path / "a.txt").write_text("a")
    outputs.file(tmp_path / "taken").write_text("b")
    outputs.file(tmp_path / "c.txt").write_text("c")
    with pytest.raises(OSError):
        outputs.commit()
    assert listing(tmp_path) == ["a.txt", "taken"]


@pytest.mark.parametrize("exchange", [True, False])
def test_swap_directory_replaces_the_whole_directory(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "_renameat2", None)  # the fallback: rename away, then in
    elif io._renameat2 is None:
        pytest.skip("no renameat2 here")
    target = tmp_path / "t"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".t.new"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    swap_directory(staging, target)
    assert listing(target) == ["new.txt"] and listing(tmp_path) == ["t"]


def test_stale_staging_of_dead_processes_is_removed_not_that_of_live_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live_pid = os.getppid()
    (tmp_path / f".out.parquet.{dead_pid}.0123abcd.tmp").write_text("killed mid-write")
    (tmp_path / f"..out.parquet.{dead_pid}.0123abcd.tmp.{dead_pid}.4567abcd.tmp").write_text("nested")
    (tmp_path / f".out.parquet.{dead_pid}.89abcdef.tmp").mkdir()
    (tmp_path / f".out.parquet.{live_pid}.0123abcd.tmp").write_text("another job, still running")
    (tmp_path / f".other.parquet.{dead_pid}.0123abcd.tmp").write_text("another output's")
    with OutputSet() as outputs:
        outputs.file(tmp_path / "out.parquet").write_text("new")
    assert listing(tmp_path) == [f".other.parquet.{dead_pid}.0123abcd.tmp", f".out.parquet.{live_pid}.0123abcd.tmp",
                                 "out.parquet"]


def test_run_refuses_a_directory_holding_other_files(tmp_path, inputs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_error(invoke("run", inputs.small, "-o", out, code=2), "notes.txt", "other files")
    assert listing(out) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        ceecore.run(str(inputs.small), tmp_path / "file")


def test_run_into_a_symlinked_directory_replaces_what_it_names(tmp_path, inputs):
    real = tmp_path / "real"
    ceecore.run(str(inputs.small), real)
    (tmp_path / "link").symlink_to(real)
    summary = ceecore.run(pq.read_table(inputs.small).slice(0, 2_000), tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and listing(tmp_path) == ["link", "real"]
    assert pq.read_metadata(real / "lines.parquet").num_rows == 2_000 == summary.stats.accepted


def test_demo_keeps_its_input_beside_the_run(tmp_path):
    out = tmp_path / "demo"
    invoke("demo", "-n", 5_000, "-o", out, "--threads", 1)
    assert listing(out) == ["input.parquet", "run"]
    assert listing(out / "run") == sorted(ceecore.pipeline.RUN_OUTPUTS)
    invoke("demo", "-n", 5_000, "-o", out, "--threads", 1)  # again: replaced, not refused
    assert listing(out) == ["input.parquet", "run"]


# ------------------------------------------------------------------ finding 7: colliding paths


def _collisions(tmp_path: Path, inputs) -> dict[str, list[object]]:
    src = tmp_path / "in" / "lines.parquet"
    src.parent.mkdir()
    src.write_bytes(inputs.small.read_bytes())
    (tmp_path / "alias.parquet").symlink_to(src)
    os.link(src, tmp_path / "hard.parquet")
    model = tmp_path / "m.arrow"
    invoke("fit", src, "-o", model, "-q")
    model.with_suffix(".model").write_bytes(model.read_bytes())
    scored = tmp_path / "s.parquet"
    invoke("score", src, "--model", model, "-o", scored, "-q")
    acc = tmp_path / "acc.parquet"
    return {
        "-o is the input": ["consolidate", src, "-o", src],
        "-o is a symlink to the input": ["consolidate", src, "-o", tmp_path / "alias.parquet"],
        "-o is a hard link of the input": ["consolidate", src, "-o", tmp_path / "hard.parquet"],
        "--rejects is -o": ["consolidate", src, "-o", acc, "--rejects", acc],
        "--state is -o": ["consolidate", src, "-o", tmp_path / "acc.arrow", "--state", tmp_path / "acc.arrow"],
        "--state is --rejects": ["consolidate", src, "-o", acc, "--rejects", tmp_path / "x.bin", "--state",
                                 tmp_path / "x.bin"],
        "default rejects is the input": ["consolidate", tmp_path / "acc.rejects.parquet", "-o", acc],
        "-o inside the input directory": ["consolidate", src.parent, "-o", src.parent / "sub" / "acc.parquet"],
        "fit --rejects is the input": ["fit", src, "-o", model.with_name("m2.arrow"), "--rejects", src],
        "fit -o is the input": ["fit", model, src, "-o", model],
        "score --rejects is the model": ["score", src, "--model", model.with_suffix(".model"), "-o", scored.with_name(
            "s2.parquet"), "--rejects", model.with_suffix(".model")],
        "score -o is the input": ["score", src, "--model", model, "-o", src],
        "run -o holds the input": ["run", src, "-o", src.parent],
        "run -o inside the input": ["run", src.parent, "-o", src.parent / "out"],
        "merge -o is a model": ["merge", model, "-o", model],
        "evaluate -o is the input": ["evaluate", tmp_path / "r.json", "-o", tmp_path / "r.json"],
        "generate --truth is -o": ["generate", "-n", 100, "-o", acc, "--truth", acc],
        "generate --truth inside -o DIR": ["generate", "-n", 100, "-o", tmp_path / "ds", "--truth",
                                           tmp_path / "ds" / "t.parquet"],
    }


def test_colliding_outputs_are_refused_before_any_work(tmp_path, inputs):
    cases = _collisions(tmp_path, inputs)
    (tmp_path / "acc.rejects.parquet").write_bytes(inputs.small.read_bytes())
    (tmp_path / "r.json").write_text("{}")
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    for name, args in cases.items():
        result = invoke(*args, code=2)
        message = one_error(result)
        assert any(word in message for word in ("same file", "is an input", "inside the", "inside the other")), \
            (name, message)
        after = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
        assert after == before, name  # nothing written, nothing destroyed


def test_outputs_that_are_fifos_or_devices_are_refused(tmp_path, inputs):
    """An output at a FIFO or a device would be renamed over it (as root, over /dev/null
    itself): refused, and the special file stays."""
    os.mkfifo(tmp_path / "fifo")
    special = [tmp_path / "fifo"]
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        special.append(tmp_path / "null")
    for path in special:
        kind = os.lstat(path).st_mode
        for args in (["consolidate", inputs.small, "-o", tmp_path / "a.parquet", "--rejects", path],
                     ["consolidate", inputs.small, "-o", tmp_path / "a.parquet", "--state", path],
                     ["fit", inputs.small, "-o", tmp_path / "m.arrow", "--rejects", path]):
            one_error(invoke(*args, code=2), "not a regular file")
            assert os.lstat(path).st_mode == kind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("a.", "m."))]


def test_check_outputs_allows_distinct_paths(tmp_path):
    (tmp_path / "in.parquet").write_text("x")
    check_outputs({"-o": tmp_path / "a.parquet", "--rejects": tmp_path / "b.parquet", "--state": None},
                  [tmp_path / "in.parquet", pa.table({"a": [1]})])
    with pytest.raises(ValueError, match="same file"):
        check_outputs({"-o": tmp_path / "a.parquet", "--rejects": tmp_path / "sub" / ".." / "a.parquet"})


# ------------------------------------------------------------------ finding 8: errors and exit codes


def _all_rejected(tmp_path: Path, inputs, share: float = 1.0) -> Path:
    """The small input with ``share`` of its rows missing their importer."""
    table = pq.read_table(inputs.small)
    ids = np.array(table["importer_id"].to_pylist(), dtype=object)
    ids[: int(share * len(ids))] = None
    path = tmp_path / f"rejected-{share}.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("importer_id"), "importer_id",
                                    pa.array(ids, pa.string())), path)
    return path


def test_too_many_rejects_fail_every_line_job_without_writing(tmp_path, inputs):
    bad = _all_rejected(tmp_path, inputs)
    model = tmp_path / "m.arrow"
    invoke("fit", inputs.small, "-o", model, "-q")
    out = tmp_path / "out"
    out.mkdir()
    before = listing(tmp_path)
    for args in (["consolidate", bad, "-o", out / "acc.parquet"],
                 ["fit", bad, "-o", out / "m.arrow"],
                 ["score", bad, "--model", model, "-o", out / "s.parquet"],
                 ["run", bad, "-o", out / "run"]):
        result = invoke(*args, code=2)
        one_error(result, "3,000 of 3,000 rows rejected", "100.0%", "50%", "missing_importer_id", "no output written")
        assert listing(out) == [], args
        assert listing(tmp_path) == before
    # Past the default but under the option: written, with the rejects.
    some = _all_rejected(tmp_path, inputs, share=0.6)
    invoke("consolidate", some, "-o", out / "acc.parquet", code=2)
    invoke("consolidate", some, "-o", out / "acc.parquet", "--max-reject-share", 0.7, "-q")
    assert pq.read_metadata(out / "acc.rejects.parquet").num_rows == 1_800
    invoke("consolidate", some, "-o", out / "acc.parquet", "--max-reject-share", 1.5, code=2)


def test_the_library_limit_is_off_by_default(tmp_path, inputs):
    bad = _all_rejected(tmp_path, inputs)
    assert ceecore.run_consolidation(str(bad)).stats.rejected == 3_000
    with pytest.raises(ceecore.pipeline.TooManyRejects, match="maximum reject share 50%"):
        ceecore.run_consolidation(str(bad), max_reject_share=0.5, rejects=tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


def test_consolidate_requires_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("consolidate", code=2)
    assert "Missing argument 'INPUTS...'" in result.output
    assert listing(tmp_path) == []


@pytest.mark.parametrize("args, fragment", [
    (["consolidate", "{src}", "-o", "{tmp}/acc.csv"], "acc.csv: unknown output type"),
    (["consolidate", "{src}", "-o", "{tmp}/acc.txt"], "acc.txt: unknown output type"),
    (["consolidate", "{src}", "-o", "{tmp}/acc.parquet", "--state", "{tmp}/st.parquet"], "Arrow IPC, not Parquet"),
    (["consolidate", "{src}", "-o", "{tmp}/acc.parquet", "--rejects", "{tmp}/r.csv"], "Parquet, not CSV"),
    (["fit", "{src}", "-o", "{tmp}/m.parquet"], "Arrow IPC, not Parquet"),
    (["score", "{src}", "--model", "{model}", "-o", "{tmp}/s.csv"], "Parquet, not CSV"),
    (["score", "{src}", "--model", "{model}", "-o", "{tmp}/s.arrow"], "Parquet, not Arrow IPC"),
    (["merge", "{model}", "-o", "{tmp}/m.parquet"], "Arrow IPC, not Parquet"),
    (["generate", "-n", "10", "-o", "{tmp}/g.pq"], "cannot write this file type"),
    (["generate", "-n", "10", "-o", "{tmp}/g.tsv"], "cannot write this file type"),
    (["generate", "-n", "10", "-o", "{tmp}/g.parquet", "--truth", "{tmp}/t.csv"], "unknown output type"),
])
def test_output_names_must_match_their_format(tmp_path, inputs, args, fragment):
    model = tmp_path / "model.arrow"
    invoke("fit", inputs.small, "-o", model, "-q")
    out = tmp_path / "out"
    out.mkdir()
    filled = [a.format(src=inputs.small, tmp=out, model=model) for a in args]
    one_error(invoke(*filled, code=2), fragment)
    assert listing(out) == []


def test_csv_and_arrow_outputs_are_what_they_say(tmp_path, inputs):
    invoke("consolidate", inputs.small, "-o", tmp_path / "a.arrow", "-q")
    assert pa.ipc.open_file(tmp_path / "a.arrow").read_all().num_rows > 0
    invoke("generate", "-n", 500, "-o", tmp_path / "g.csv", "--truth", tmp_path / "t.arrow", "-q")
    assert pacsv.read_csv(tmp_path / "g.csv").num_rows == 500
    assert pa.ipc.open_file(tmp_path / "t.arrow").read_all().num_rows > 0
    assert output_format("x.PQ") == "parquet" and output_format("x.feather") == "ipc"


def test_bad_option_files_and_values_exit_2_with_one_line(tmp_path, inputs):
    mapping = tmp_path / "m.toml"
    mapping.write_text("columns = 5\n")
    one_error(invoke("consolidate", inputs.small, "-o", tmp_path / "a.parquet", "--mapping", mapping, code=2),
              "m.toml", "[columns]")
    mapping.write_text("[columns]\nimporter = 7\n")
    one_error(invoke("consolidate", inputs.small, "-o", tmp_path / "a.parquet", "--mapping", mapping, code=2),
              "m.toml")
    mapping.write_text('[options]\ndate_format = 3\n')
    one_error(invoke("consolidate", inputs.small, "-o", tmp_path / "a.parquet", "--mapping", mapping, code=2),
              "m.toml", "date_format")
    config = tmp_path / "c.toml"
    for value in ("inf", "-inf", "nan", "1e400"):
        config.write_text(f"[norms]\nmin_group_lines = {value}\n")
        one_error(invoke("fit", inputs.small, "-o", tmp_path / "m.arrow", "--config", config, code=2), "c.toml")
    result = invoke("generate", "-n", "1e14", "-o", tmp_path / "g.parquet", code=2)
    assert "Traceback" not in result.output and "'1e14' is not a valid integer" in result.output
    result = invoke("generate", "-n", 10**14, "-o", tmp_path / "g.parquet", code=2)
    assert "Traceback" not in result.output and "--lines" in result.output
    one_error(invoke("generate", "-n", 10**11, "-o", tmp_path / "g.parquet", code=2), "2,000,000,000 importer accounts",
              "GiB of memory")
    one_error(invoke("demo", "-n", 10**11, "-o", tmp_path / "g", code=2), "GiB of memory")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("g")]


def test_date_format_option_reads_text_dates(tmp_path, inputs):
    table = pq.read_table(inputs.small)
    want = ceecore.consolidate(table)
    days = pc.strftime(table["entry_date"], format="%d/%m/%Y")
    path = tmp_path / "dmy.csv"
    pacsv.write_csv(table.set_column(table.schema.get_field_index("entry_date"), "entry_date", days), path)
    invoke("consolidate", path, "-o", tmp_path / "dmy.parquet", "-q", code=2)  # ISO expected: all rejected
    invoke("consolidate", path, "-o", tmp_path / "dmy.parquet", "-q", "--date-format", "%d/%m/%Y")
    got = pq.read_table(tmp_path / "dmy.parquet")
    assert got.equals(want)


# ------------------------------------------------------------------ finding 8: malformed CSV lines


def _csv_lines(inputs, rows: int = 400) -> list[bytes]:
    """The first ``rows`` lines of the small input as CSV lines (header first), the
    consolidated columns only (the parser infers the others' types from the first block)."""
    table = pq.read_table(inputs.small).slice(0, rows)
    table = table.select([c for c in table.column_names if c in ceecore.CONSOLIDATION_COLUMNS])
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes().split(b"\n")[:-1]


def _break(line: bytes, how: str) -> bytes:
    if how == "short":
        return line[: line.index(b",", 20)]
    if how == "long":
        return line + b',"SECRET-EXTRA"'
    if how == "latin1":  # a quoted id with a byte that is not UTF-8
        return line.replace(b'"', b'"\xe9', 1)
    return b""  # empty


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_malformed_csv_lines_are_rejected_in_place_and_the_rest_read(tmp_path, monkeypatch, inputs, data):
    """Whatever lines are broken (too few or many fields, not UTF-8, empty), wherever they
    are (across parse blocks, at the end): each is one malformed_csv_line reject at row
    line - 2, every other line is read as if the broken ones were not there."""
    monkeypatch.setattr(io, "CSV_BLOCK_BYTES", 1 << 12)  # ~25 lines a block
    lines = _csv_lines(inputs)
    n = len(lines) - 1
    broken = data.draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(["short", "long", "latin1", "empty"]),
                                       max_size=12))
    out = list(lines)
    for row, how in broken.items():
        out[row + 1] = _break(out[row + 1], how)
    path = tmp_path / f"broken-{len(broken)}.csv"
    path.write_bytes(b"\n".join(out) + b"\n")
    rejects = tmp_path / "r.parquet"
    run = ceecore.run_consolidation(str(path), rejects=rejects)
    assert run.stats.rows_read == n and run.stats.rejected == len(broken)
    got = pq.read_table(rejects)
    reasons = {"empty": {"missing_entry_number"}}  # an empty line is a row of nulls
    assert sorted(got["row"].to_pylist()) == sorted(broken)
    for row, reason in zip(got["row"].to_pylist(), got["reason"].to_pylist()):
        assert reason in reasons.get(broken[row], {"malformed_csv_line"}), (row, broken[row], reason)
    malformed = got.filter(pc.equal(got["reason"], "malformed_csv_line"))
    assert all(malformed[c].null_count == malformed.num_rows for c in ceecore.CONSOLIDATION_COLUMNS)
    clean = tmp_path / "clean.csv"
    clean.write_bytes(b"\n".join(line for i, line in enumerate(lines) if i - 1 not in broken) + b"\n")
    assert run.accounts.equals(ceecore.consolidate(str(clean)))


def test_cli_rejects_malformed_lines_without_echoing_them(tmp_path, inputs):
    lines = _csv_lines(inputs, 50)
    secret = lines[3].split(b",")[2]  # the importer id of line 4
    lines[3] = lines[3] + b',"SECRET"'
    lines[7] = lines[7].replace(b'"', b'"\xff', 1)
    lines.append(b"1,2")
    path = tmp_path / "in.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = invoke("consolidate", path, "-o", tmp_path / "a.parquet")
    assert secret.decode() not in result.output and "SECRET" not in result.output
    assert "read 51 lines" in result.output and "48 accepted, 3 rejected" in result.output
    assert "malformed_csv_line" in result.output
    rejected = pq.read_table(tmp_path / "a.rejects.parquet")
    assert rejected.select(["row", "reason"]).to_pylist() == [
        {"row": r, "reason": "malformed_csv_line"} for r in (2, 6, 50)]


def test_a_line_both_ragged_and_not_utf8_stops_with_its_line_number_only(tmp_path, inputs):
    lines = _csv_lines(inputs, 20)
    lines[5] = b"\xffSECRET," + lines[5][:30]
    path = tmp_path / "in.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.run(ceecore_cmd("consolidate", path, "-o", tmp_path / "a.parquet"), env=ENV,
                          capture_output=True, text=True, errors="replace", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "line 6" in proc.stderr and "SECRET" not in proc.stderr and "Traceback" not in proc.stderr
    assert listing(tmp_path) == ["in.csv"]


def test_the_cli_runs_outside_the_main_thread(tmp_path, inputs):
    """(Signal handlers can only be set in the main thread: the commit must not need them.)"""
    results = []
    thread = threading.Thread(target=lambda: results.append(
        CliRunner().invoke(cli, ["consolidate", str(inputs.small), "-o", str(tmp_path / "a.parquet"), "-q"])))
    thread.start()
    thread.join()
    assert results[0].exit_code == 0, results[0].output
    assert listing(tmp_path) == ["a.parquet", "a.rejects.parquet"]


def test_csv_columns_a_job_does_not_read_are_not_parsed(tmp_path, monkeypatch, inputs):
    """A column the job does not read cannot stop it: a type the parser guessed from the
    first block (all empty: null) and a later value that does not fit it."""
    monkeypatch.setattr(io, "CSV_BLOCK_BYTES", 1 << 12)
    table = pq.read_table(inputs.small).slice(0, 300)
    table = table.select([c for c in table.column_names if c in ceecore.CONSOLIDATION_COLUMNS])
    late = pa.array([None] * 250 + ["true"] * 50, pa.string())
    path = tmp_path / "late.csv"
    pacsv.write_csv(table.append_column("unused_flag", late), path)
    run = ceecore.run_consolidation(str(path))
    assert (run.stats.rows_read, run.stats.rejected) == (300, 0)
    assert run.accounts.equals(ceecore.consolidate(table))
