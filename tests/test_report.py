"""The report (``ceecore report``): its HTML, its numbers, and the page in a real browser.

The run directory is the demo's (``ceecore demo``, 60,000 lines), and a copy of it with
the files other jobs add (uniformity, trends, shifts, facilitation tiers), built here as
small tables of their schemas, some of their text hostile. The browser test drives
Debian's headless Chromium (``/usr/bin/chromium``, ``/usr/bin/chromedriver``) with
selenium and keeps screenshots in ``$CEECORE_ARTIFACTS`` (default ``tests/artifacts/``,
ignored by git); it skips only where those are not installed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceecore.centers import CenterMap
from ceecore.evaluate import evaluate, metrics
from ceecore.report import SCORE_BINS, Lines, gains, report
from tests.processes import cli_env

CODES = CenterMap.default().codes
HOSTILE = '<script>alert("x")</script><img src="http://example.com/x.png">'
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("CEECORE_ARTIFACTS", Path(__file__).parent / "artifacts"))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ceecore", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of ``ceecore demo`` on 60,000 generated lines (with outcomes)."""
    root = tmp_path_factory.mktemp("demo")
    done = _cli("demo", "-n", "60000", "--seed", "3", "-o", str(root))
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.fixture(scope="module")
def full(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's run directory with uniformity, trends, shifts and facilitation tiers
    replaced by known ones, and hostile text in an importer id, a Center name and the
    findings."""
    path = tmp_path_factory.mktemp("full") / "run"
    shutil.copytree(demo, path)
    accounts = pq.read_table(path / "accounts.parquet")
    n = accounts.num_rows
    ids = accounts.column("importer_id").to_pylist()
    first = pc.index(accounts.column("rank_in_center"), 1).as_py()  # a riskiest account, shown everywhere
    original, ids[first] = ids[first], HOSTILE
    names = accounts.column("center_name").to_pylist()
    names = [HOSTILE if c == "002" else name for c, name in zip(accounts.column("center").to_pylist(), names)]
    tier = np.where(np.arange(n) % 3 == 0, "expedite", "standard")
    index = accounts.schema.get_field_index
    accounts = (accounts.set_column(0, "importer_id", pa.array(ids, pa.large_string()))
                .set_column(index("center_name"), "center_name", pa.array(names))
                .set_column(index("facilitation"), "facilitation", pa.array(tier))
                .set_column(index("facilitation_reasons"), "facilitation_reasons",
                            pa.array([f"long record; {HOSTILE}"] * n)))
    pq.write_table(accounts, path / "accounts.parquet")
    worklist = pq.read_table(path / "worklist.parquet")
    wids = [HOSTILE if i == original else i for i in worklist.column("importer_id").to_pylist()]
    pq.write_table(worklist.set_column(4, "importer_id", pa.array(wids)), path / "worklist.parquet")
    rejects = pq.read_table(path / "rejects.parquet")
    hts = ["8511100000", "8511.10.00", "not a code", None]
    rejected = {name: pa.array([None] * len(hts), field.type) for name, field in zip(rejects.schema.names, rejects.schema)}
    rejected.update(reason=pa.array(["bad_entry_date"] * len(hts)), hts_code=pa.array(hts, pa.large_string()))
    pq.write_table(pa.table(rejected, schema=rejects.schema), path / "rejects.parquet")
    pq.write_table(_uniformity(), path / "uniformity.parquet")
    trends, shifts = _trends()
    pq.write_table(trends, path / "trends.parquet")
    pq.write_table(shifts, path / "shifts.parquet")
    return path


def _uniformity() -> pa.Table:
    """Findings per Center: one significant with hostile text, one not significant."""
    rows = []
    for code in CODES:
        rows.append(dict(center=code, level="hts10", hts="8511100000", origin="CN", port="2704", measure="inspection_rate",
                         port_value=0.25, other_value=0.05, effect=5.0, port_lines=400, other_lines=9000,
                         p_value=1e-9, q_value=1e-7, finding=f"port 2704 inspects 5x as often {HOSTILE}"))
        rows.append(dict(center=code, level="center", hts=None, origin=None, port="3001", measure="duty_rate",
                         port_value=0.031, other_value=0.030, effect=1.03, port_lines=50, other_lines=900,
                         p_value=0.4, q_value=0.6, finding="NOT SIGNIFICANT"))
    return pa.Table.from_pylist(rows).sort_by("q_value")


def _trends() -> tuple[pa.Table, pa.Table]:
    months = [dt.date(2025, m, 1) for m in range(1, 13)]
    rows, shifts = [], []
    for k, code in enumerate(CODES):
        for measure, base in (("lines", 1000.0), ("entered_value", 2e6), ("duty_rate", 3.5), ("inspection_rate", 0.05)):
            for m, month in enumerate(months):
                rows.append(dict(center=code, measure=measure, key="", month=month, value=base * (1 + 0.02 * m + k / 50),
                                 lines=1000 + m))
        rows.append(dict(center=code, measure="origin_share", key="851110 VN", month=months[0], value=0.2, lines=50))
        shifts.append(dict(center=code, measure="origin_share", key="851110 VN", month=months[6], before=0.1,
                           after=0.4, change=0.3, p_value=1e-6, q_value=1e-5, finding=f"VN's share of 851110 rose {HOSTILE}"))
        shifts.append(dict(center=code, measure="lines", key="", month=months[3], before=1000.0, after=1010.0,
                           change=10.0, p_value=0.5, q_value=0.7, finding="NOT FLAGGED"))
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(shifts)


@pytest.fixture(scope="module")
def demo_page(demo: Path) -> str:
    return report(demo)


@pytest.fixture(scope="module")
def full_page(full: Path) -> str:
    return report(full)


class _Outline(HTMLParser):
    """What the tests check of a page: tags, sections and what is in them, links, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, dict[str, int]] = {}
        self.current: str | None = None
        self.headings: dict[str, str] = {}
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self.current = a.get("id")
            self.sections[self.current or ""] = {}
        if self.current:
            counts = self.sections[self.current]
            counts[tag] = counts.get(tag, 0) + 1
        self._h2 = tag == "h2"

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.current = None
        if tag == "h2":
            self._h2 = False

    def handle_data(self, data: str) -> None:
        if self._h2 and self.current:
            self.headings[self.current] = self.headings.get(self.current, "") + data


def _outline(page: str) -> _Outline:
    parser = _Outline()
    parser.feed(page)
    return parser


# ----------------------------------------------------------------------------- the HTML


def test_one_section_per_center_with_its_charts_and_no_outside_reference(demo_page: str) -> None:
    page = demo_page
    outline = _outline(page)
    centers = [s for s in outline.sections if s.startswith("center-")]
    assert len(centers) == len(CODES)
    assert [outline.headings[s].split()[0] for s in centers] == list(CODES)
    for section in centers:
        counts = outline.sections[section]
        assert counts.get("svg", 0) >= 3, section  # the score distribution, the lift curve, the trends
        assert counts.get("table", 0) >= 2, section  # worklist, riskiest accounts, detection
    links = [a["href"] for tag, a in outline.tags if tag == "a"]
    assert {f"#{s}" for s in centers} <= set(links) and all(h.startswith("#") for h in links)
    assert not [t for t, _ in outline.tags if t in ("script", "img", "link", "iframe", "object", "embed")]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", page)
    csp = [a for t, a in outline.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    for note in ("No trends.parquet", "No uniformity.parquet", "no facilitation tier"):  # run writes them all
        assert note not in page
    assert "NOT SIGNIFICANT" not in page


def test_the_files_other_jobs_add_show_in_each_center(full: Path, full_page: str) -> None:
    page = full_page
    outline = _outline(page)
    for k, code in enumerate(CODES, 1):
        section = page[page.index(f'id="center-{k}"'):]
        section = section[:section.index("</section>")]
        assert "port 2704 inspects 5x as often" in section
        assert "VN&#x27;s share of 851110 rose" in section
        assert "Eligible for expedited release" in section
        assert outline.sections[f"center-{k}"]["svg"] >= 3  # scores, lift, trends
    assert "NOT SIGNIFICANT" not in page and "NOT FLAGGED" not in page
    last = dt.date.fromisoformat(json.loads((full / "summary.json").read_text())["model"]["last_date"])
    home = list(CODES).index(CenterMap.default().center_of("8511100000", last)) + 1
    for k in range(1, len(CODES) + 1):  # the rejected rows with a readable HTS number count for its Center
        assert f"<dt>rejected rows</dt><dd>{2 if k == home else 0}</dd>" in page.split(f'id="center-{k}"')[1]
    for note in ("No trends.parquet", "No uniformity.parquet", "no facilitation tier"):
        assert note not in page


def test_hostile_text_from_the_data_is_escaped(full_page: str) -> None:
    page = full_page
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert page.count(escaped) >= 4  # importer id, Center name, findings, shifts, facilitation reasons
    assert not [a for t, a in _outline(page).tags if t in ("script", "img")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=4))
def test_any_text_in_a_table_reads_back_as_itself_and_makes_no_tag(cells: list[str]) -> None:
    from ceecore.report import _table

    page = _table(["a"] * len(cells), [cells])
    parser = _Outline()
    texts: list[str] = []
    parser.handle_data = texts.append  # type: ignore[method-assign]
    parser.feed(page)
    parser.close()
    assert {t for t, _ in parser.tags} <= {"div", "table", "thead", "tbody", "tr", "th", "td"}
    assert "".join(texts) == "a" * len(cells) + "".join(cells)


def test_a_hand_edited_summary_does_not_stop_the_report(demo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo, run)
    (run / "summary.json").write_text(json.dumps({"model": "?", "lines_scored": "many", "rejects_by_reason": [1]}))
    assert "many" in report(run)


def test_the_detection_numbers_are_those_of_evaluate(demo: Path) -> None:
    """Read a batch at a time, the labelled lines give what evaluate gives on the file."""
    lines = Lines.read(demo / "lines.parquet")
    ours = evaluate(lines.labelled, label="label", revenue="revenue", by="center")
    theirs = evaluate(demo / "lines.parquet", label="violation", revenue="revenue_recovered", by="center")
    assert ours["overall"] == theirs["overall"] and ours["groups"] == theirs["groups"]
    table = pq.read_table(demo / "lines.parquet", columns=["center", "score"])
    counts = pc.value_counts(table.column("center").combine_chunks()).to_pylist()
    assert lines.counts == {row["values"]: row["counts"] for row in counts}
    scores = table.column("score").to_numpy()
    assert sum(h.sum() for h in lines.histograms.values()) == len(scores)
    assert np.array_equal(sum(lines.histograms.values()),
                          np.bincount(np.minimum((scores * SCORE_BINS).astype(int), SCORE_BINS - 1),
                                      minlength=SCORE_BINS))


def test_generator_scheme_labels_are_used_where_the_lines_have_them(demo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo, run)
    lines = pq.read_table(run / "lines.parquet")
    truth = pq.read_table(demo.parent / "input.parquet", columns=["entry_number", "line_number", "scheme"])
    keyed = {(e, n): s for e, n, s in zip(*(truth.column(c).to_pylist() for c in truth.column_names))}
    scheme = [keyed[(e, n)] for e, n in zip(lines.column("entry_number").to_pylist(), lines.column("line_number").to_pylist())]
    pq.write_table(lines.append_column("scheme", pa.array(scheme)), run / "lines.parquet")
    page = report(run)
    assert "scheme lines (the generator&#x27;s truth)" in page
    tallies = Lines.read(run / "lines.parquet")
    assert tallies.label == "scheme" and tallies.labelled.num_rows == lines.num_rows


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_line_tallies_do_not_depend_on_the_batching(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 300))
    codes = data.draw(st.lists(st.sampled_from(["001", "002", "010", None]), min_size=n, max_size=n))
    scores = data.draw(st.lists(st.sampled_from([0.0, 0.025, 0.5, 0.999, 1.0]) | st.floats(0, 1), min_size=n, max_size=n))
    violation = data.draw(st.lists(st.sampled_from([True, False, None]), min_size=n, max_size=n))
    inspected = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    revenue = data.draw(st.lists(st.sampled_from([None, 0.0, 10.5, 1e6]), min_size=n, max_size=n))
    table = pa.table({"center": pa.array(codes, pa.string()), "score": scores, "inspected": inspected,
                      "violation": pa.array(violation, pa.bool_()), "revenue_recovered": pa.array(revenue, pa.float64())})
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n])]
    whole = Lines.for_columns(table.column_names).update([table])
    batched = Lines.for_columns(table.column_names).update(pieces)
    assert whole.counts == batched.counts
    assert {c: h.tolist() for c, h in whole.histograms.items()} == {c: h.tolist() for c, h in batched.histograms.items()}
    known = [v is not None and i for v, i in zip(violation, inspected)]
    assert (whole.labelled.num_rows if whole.labelled is not None else 0) == sum(known)
    if whole.labelled is not None:
        assert whole.labelled.equals(batched.labelled)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.3, 0.7, 1.0]), st.booleans(), st.sampled_from([0.0, 5.0, 20.0])),
                min_size=1, max_size=200))
def test_gains_are_the_recall_evaluate_gives_at_every_share(lines: list[tuple[float, bool, float]]) -> None:
    scores, y, money = (np.array(v, float) for v in zip(*lines))
    curve = gains(scores, y, money)
    for share, found, revenue in zip(curve["share"], curve["found"], curve["revenue"]):
        k = int(round(share * len(y)))
        m = metrics(scores, y, money, shares=(k / len(y),))
        at = m[next(key for key in m if key.endswith("%"))]
        assert at["lines"] == k
        assert found == pytest.approx(at["recall"] or 0.0) and revenue == pytest.approx(at["revenue"] or 0.0)


# ----------------------------------------------------------------------------- the command


def test_cli_writes_the_report_and_refuses_bad_input_clearly(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = _cli("report", str(demo), "-o", str(out), "--hide-ids")
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and not list(tmp_path.glob(".*.tmp"))
    ids = pq.read_table(demo / "worklist.parquet", columns=["importer_id"]).column("importer_id").to_pylist()
    assert "(hidden)" in page and not [i for i in set(ids) if i in page]
    for args, message in ((["report", str(demo), "-o", str(tmp_path / "r.pdf")], "name it .html"),
                          (["report", str(tmp_path), "-o", str(tmp_path.parent / "x.html")], "holds no summary.json"),
                          (["report", str(demo), "-o", str(demo / "r.html")], "inside the input directory")):
        done = _cli(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    broken = tmp_path / "broken"
    shutil.copytree(demo, broken)
    (broken / "lines.parquet").write_bytes(b"not parquet")
    done = _cli("report", str(broken), "-o", str(tmp_path / "b.html"))
    assert done.returncode == 2 and "lines.parquet" in done.stderr and "Traceback" not in done.stderr
    (broken / "summary.json").write_text("{")
    done = _cli("report", str(broken), "-o", str(tmp_path / "b.html"))
    assert done.returncode == 2 and "not JSON" in done.stderr


def test_cli_says_how_to_get_matplotlib_when_it_is_missing(demo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "shadow" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env["PYTHONPATH"]])
    done = _cli("report", str(demo), "-o", str(tmp_path / "r.html"), env=env)
    assert done.returncode == 2 and "pip install 'ceecore[report]'" in done.stderr, done.stderr
    assert not (tmp_path / "r.html").exists()


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install chromium chromium-driver")
    from selenium import webdriver  # (in the test extra)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1366,900"):  # a laptop's screen
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.mark.parametrize("which", ["demo", "full"])
def test_the_page_renders_in_chromium_alone(which: str, request: pytest.FixtureRequest, browser, tmp_path: Path) -> None:
    """The demo's report as the command writes it, and the report with every file."""
    page = tmp_path / "report.html"
    if which == "demo":
        done = _cli("report", str(request.getfixturevalue("demo")), "-o", str(page))
        assert done.returncode == 0, done.stderr
    else:
        page.write_text(request.getfixturevalue("full_page"), encoding="utf-8")
    browser.get_log("performance")  # (what came before)
    browser.get(page.as_uri())
    # get() returns once the page loads, but on a loaded machine Chromium has been seen to
    # answer "loading" first: wait for it (a page that never completes still fails, in 60 s).
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")
    assert browser.get_log("browser") == []  # no console message at all: no error, no blocked load
    requested = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    assert requested == {page.as_uri()}
    sizes = browser.execute_script("""
        return [...document.querySelectorAll('section.center')].map(s => ({
            id: s.id, height: s.getBoundingClientRect().height,
            charts: [...s.querySelectorAll('svg')].map(c => [c.getBoundingClientRect().width,
                                                             c.getBoundingClientRect().height])}));""")
    assert len(sizes) == len(CODES)
    for section in sizes:
        assert section["height"] > 0 and section["charts"], section["id"]
        assert all(w > 100 and h > 50 for w, h in section["charts"]), section
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1366  # nothing wider than a laptop's screen
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"report-{which}-top.png"))
    browser.find_element("css selector", "#center-1").screenshot(str(ARTIFACTS / f"report-{which}-center-001.png"))
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": False})["data"])
    (ARTIFACTS / f"report-{which}.pdf").write_bytes(pdf)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages >= len(CODES) + 1  # a page break before every Center
