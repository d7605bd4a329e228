"""The report: ``ceecore report`` on the run directory of LINES generated lines.

- fresh process: ``ceecore.report.write_report`` in a new process (start-up and imports
  included in the time; its own time and peak RSS in the extra info, and printed);
- in process: :func:`ceecore.report.report`, reading the directory and drawing the page.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import ceecore
from benchmarks.conftest import LINES, ROUNDS
from ceecore.report import report

ROOT = Path(__file__).resolve().parents[1]
# The peak is the process's own (VmHWM): getrusage's maxrss can carry the parent's over exec.
SCRIPT = """
import json, sys, time
started = time.perf_counter()
from ceecore.report import write_report
write_report(sys.argv[1], sys.argv[2])
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak}))
"""


@pytest.fixture(scope="module")
def run_directory(lines_table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    ceecore.run(lines_table, out)
    return out


@pytest.mark.benchmark(group="report")
def test_report_fresh_process(benchmark, run_directory, tmp_path):  # noqa: ANN001
    reports = []

    def run() -> None:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(run_directory), str(tmp_path / "report.html")],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        reports.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.name = "test_report[ceecore report, fresh process]"
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    peak = max(r["peak_mb"] for r in reports)
    seconds = min(r["seconds"] for r in reports)
    benchmark.extra_info.update(lines=LINES, peak_rss_mb=round(peak, 1), seconds=seconds)
    print(f"\nceecore report: {LINES:,} lines in {seconds:.2f} s (in process), peak RSS {peak:.0f} MB, "
          f"{(tmp_path / 'report.html').stat().st_size / 1e3:,.0f} KB")


@pytest.mark.benchmark(group="report")
def test_report_in_process(benchmark, run_directory):  # noqa: ANN001
    benchmark.name = "test_report[ceecore report(), in process]"
    page = benchmark.pedantic(report, args=(run_directory,), rounds=ROUNDS, iterations=1)
    assert page.count('class="center"') == len(ceecore.CenterMap.default().codes)
