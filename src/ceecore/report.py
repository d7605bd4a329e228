"""The report: a run directory as one self-contained HTML page, a section per Center.

From what ``run`` (or ``score``) wrote, :func:`report` builds the page a Center's
analysts look at: key figures, the worklist with reasons, the riskiest accounts, the
score distribution, where labels exist the detection measures at the top 1-10% with a
lift curve (:mod:`ceecore.evaluate`), and, where the files are there, trends, flagged
shifts, uniformity findings and the accounts eligible for expedited release.

The page needs nothing outside itself: the charts are inline SVG drawn by matplotlib
(static, no script, prints as drawn), a Content-Security-Policy forbids loading anything
(scripts included), and every value from the data is escaped. ``lines.parquet`` is read
a batch at a time, for the few columns the report needs: memory follows the Centers and
the labelled lines, not the lines.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ceecore import __version__
from ceecore.centers import CenterMap
from ceecore.evaluate import SHARES, evaluate
from ceecore.io import atomic_path, open_sources
from ceecore.schema import ContractError

__all__ = ["report", "write_report"]

SCORE_BINS = 40          # bars of the score distribution, over [0, 1]
TABLE_ROWS = 20          # rows of each table (the files hold the rest)
FINDING_Q = 0.05         # uniformity findings shown: FDR-adjusted p below this
SHIFT_Q = 0.10           # trend shifts shown: FDR-adjusted p below this
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
NO_CENTER = ""           # the group of lines whose goods no Center owns

# The columns each file must have (their other columns are not read).
ACCOUNT_COLUMNS = ("importer_id", "center", "lines", "entered_value", "duty", "effective_duty_rate",
                   "first_entry_date", "last_entry_date", "score", "reasons", "rank_in_center")
WORKLIST_COLUMNS = ("kind", "center", "rank", "pick", "importer_id", "entry_number", "line_number", "score",
                    "reasons")
UNIFORMITY_COLUMNS = ("center", "level", "hts", "origin", "port", "measure", "port_value", "other_value", "effect",
                      "port_lines", "other_lines", "q_value", "finding")
TRENDS_COLUMNS = ("center", "measure", "key", "month", "value")
SHIFTS_COLUMNS = ("center", "measure", "key", "month", "before", "after", "change", "q_value", "finding")


# ----------------------------------------------------------------------------- reading


@dataclass
class Lines:
    """What the report needs of ``lines.parquet``, tallied a batch at a time: lines and a
    score histogram per Center, and the labelled lines (score, label, revenue, Center)."""

    counts: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    label: str | None = None       # what the labels are: "violation" or "scheme"
    revenue: str | None = None     # the column of money found per labelled line, if any
    labelled: pa.Table | None = None

    @classmethod
    def read(cls, path: Path) -> Lines:
        """The tallies of a ``lines.parquet``, read a batch at a time for the columns needed."""
        names = _parquet_names(path)
        for column in ("center", "score"):
            if column not in names:
                raise ContractError(str(path), "no such column: not the lines a run scored", column)
        out = cls.for_columns(names)
        wanted = ["center", "score"] + [c for c in (out.label, out.revenue, "inspected") if c and c in names]
        return out.update(pa.table(chunk.batch) for chunk in open_sources(path, columns=wanted)[1])

    @classmethod
    def for_columns(cls, names: Sequence[str]) -> Lines:
        """Empty tallies for lines with these columns: labelled by the generator's
        ``scheme`` where there (every line), else by ``violation`` (inspected lines)."""
        if "scheme" in names:
            return cls(label="scheme", revenue="duty_lost" if "duty_lost" in names else None)
        if "violation" in names:
            return cls(label="violation", revenue="revenue_recovered" if "revenue_recovered" in names else None)
        return cls()

    def update(self, batches: Iterable[pa.Table]) -> Lines:
        """Adds batches of lines, in order (the labelled lines keep it: it breaks ties)."""
        parts = [] if self.labelled is None else [self.labelled]
        for batch in batches:
            part = self._add(batch)
            if part is not None and part.num_rows:
                parts.append(part)
        if parts:
            self.labelled = pa.concat_tables(parts)
        return self

    def _add(self, batch: pa.Table) -> pa.Table | None:
        """Tallies one batch; returns its labelled lines."""
        centers = pc.fill_null(pc.cast(batch.column("center"), pa.string()), NO_CENTER).combine_chunks()
        scores = _numbers(batch.column("score"))
        encoded = pc.dictionary_encode(centers)
        codes = encoded.dictionary.to_pylist()
        group = encoded.indices.to_numpy(zero_copy_only=False)
        bins = np.clip(np.nan_to_num(scores * SCORE_BINS), 0, SCORE_BINS - 1).astype(np.int64)
        tallies = np.bincount(group * SCORE_BINS + bins, minlength=len(codes) * SCORE_BINS)
        for k, code in enumerate(codes):
            row = tallies[k * SCORE_BINS:(k + 1) * SCORE_BINS]
            self.histograms[code] = self.histograms.get(code, 0) + row
            self.counts[code] = self.counts.get(code, 0) + int(row.sum())
        if self.label is None:
            return None
        if self.label == "scheme":
            known = pa.array(np.ones(len(scores), bool))
            truth = pc.is_valid(batch.column("scheme"))
        else:
            truth = pc.cast(batch.column("violation"), pa.bool_())
            known = pc.is_valid(truth)
            if "inspected" in batch.column_names:  # an outcome of a line not inspected is no outcome
                known = pc.and_(known, pc.fill_null(pc.cast(batch.column("inspected"), pa.bool_()), True))
        part = {"score": pa.array(scores), "label": truth, "center": centers}
        if self.revenue:
            part["revenue"] = pc.fill_null(pc.cast(batch.column(self.revenue), pa.float64()), 0.0)
        return pa.table(part).filter(known)


@dataclass
class RunDirectory:
    """The files of a run directory the report reads (the optional ones None when absent)."""

    path: Path
    summary: dict[str, Any]
    accounts: pa.Table
    worklist: pa.Table
    rejects: pa.Table
    lines: Lines
    uniformity: pa.Table | None
    trends: pa.Table | None
    shifts: pa.Table | None

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> RunDirectory:
        path = Path(directory)
        if not path.is_dir():
            raise ContractError(str(path), "not a directory: give the directory that 'ceecore run' wrote")
        for name in ("summary.json", "lines.parquet", "accounts.parquet", "worklist.parquet"):
            if not (path / name).is_file():
                raise ContractError(str(path), f"holds no {name}: give the directory that 'ceecore run' wrote")
        try:
            summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError(str(path / "summary.json"), f"not JSON: {exc}") from None
        if not isinstance(summary, dict):
            raise ContractError(str(path / "summary.json"), "not a run's summary (a JSON object)")
        accounts = _read_table(path / "accounts.parquet", ACCOUNT_COLUMNS,
                          ("center_name", "field_office", "facilitation", "facilitation_reasons"))
        rejects = path / "rejects.parquet"
        return cls(
            path=path, summary=summary, accounts=accounts,
            worklist=_read_table(path / "worklist.parquet", WORKLIST_COLUMNS),
            rejects=_read_table(rejects, ("reason",), ("hts_code",)) if rejects.is_file() else pa.table({"reason": []}),
            lines=Lines.read(path / "lines.parquet"),
            uniformity=_optional(path / "uniformity.parquet", UNIFORMITY_COLUMNS),
            trends=_optional(path / "trends.parquet", TRENDS_COLUMNS),
            shifts=_optional(path / "shifts.parquet", SHIFTS_COLUMNS),
        )


def _parquet_names(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"cannot read: {exc}") from exc


def _read_table(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> pa.Table:
    """The ``required`` and ``optional`` columns of a table file (a missing required one
    is an error naming the file and the column)."""
    names = _parquet_names(path)
    for column in required:
        if column not in names:
            raise ContractError(str(path), "no such column (is this a run's output?)", column)
    wanted = [c for c in (*required, *optional) if c in names]
    batches = [chunk.batch for chunk in open_sources(path, columns=wanted)[1]]
    return pa.Table.from_batches(batches) if batches else pa.table({c: [] for c in wanted})


def _optional(path: Path, required: Sequence[str]) -> pa.Table | None:
    return _read_table(path, required) if path.is_file() else None


def _numbers(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


# ----------------------------------------------------------------------------- charts


def _pyplot_parts() -> tuple[Any, Any]:
    """matplotlib's Figure and SVG canvas, or a clear message if it is not installed."""
    try:
        from matplotlib.backends.backend_svg import FigureCanvasSVG
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("the report draws its charts with matplotlib, which is not installed: "
                         "pip install 'ceecore[report]'") from None
    return Figure, FigureCanvasSVG


class Charts:
    """Draws the report's charts as inline SVG: text as text (small files, selectable,
    crisp in print), no metadata, ids unique per chart (many SVGs share one page)."""

    def __init__(self) -> None:
        self._figure, self._canvas = _pyplot_parts()
        self._count = 0

    def svg(self, draw: Any, size: tuple[float, float], label: str) -> str:
        import matplotlib

        self._count += 1
        style = {"svg.fonttype": "none", "svg.hashsalt": f"ceecore-{self._count}", "font.size": 8,
                 "font.family": "sans-serif", "axes.spines.top": False, "axes.spines.right": False}
        with matplotlib.rc_context(style):
            figure = self._figure(figsize=size)
            self._canvas(figure)
            width, height = size  # fixed margins, in inches (a layout engine would double the time)
            figure.subplots_adjust(left=0.62 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                                   top=1 - 0.25 / height, wspace=0.62 / 1.3)
            draw(figure)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        text = buffer.getvalue()
        text = text[text.index("<svg"):]
        return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" class="chart" ', 1)

    def scores(self, histogram: np.ndarray) -> str:
        """The distribution of the lines' scores (a log scale: most lines score near 0)."""
        def draw(figure: Any) -> None:
            ax = figure.subplots()
            edges = np.linspace(0, 1, SCORE_BINS + 1)
            ax.bar(edges[:-1], histogram, width=1 / SCORE_BINS, align="edge", color="#3b6ea8", edgecolor="white",
                   linewidth=0.3)
            ax.set_yscale("symlog", linthresh=1)
            ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")  # (plain text: no mathtext)
            ax.set_xlim(0, 1)
            ax.set_xlabel("line score")
            ax.set_ylabel("lines")
        return self.svg(draw, (5.6, 2.1), "score distribution")

    def lift(self, gains: dict[str, np.ndarray]) -> str:
        """Cumulative gains: the share of violations (and revenue) found against the share
        of lines reviewed, highest scores first, with the random selection's diagonal."""
        def draw(figure: Any) -> None:
            ax = figure.subplots()
            share = gains["share"]
            ax.plot(share * 100, gains["found"] * 100, color="#b03a2e", label="violations found")
            if "revenue" in gains:
                ax.plot(share * 100, gains["revenue"] * 100, color="#1e8449", label="revenue found")
            diagonal = np.geomspace(0.5, 100, 50)
            ax.plot(diagonal, diagonal, color="#888888", linestyle="--", linewidth=0.8, label="random")
            for cut in SHARES:
                ax.axvline(cut * 100, color="#dddddd", linewidth=0.6, zorder=0)
            ax.set_xscale("log")
            ax.set_xlim(0.5, 100)
            ax.set_xticks([0.5, 1, 2, 5, 10, 20, 50, 100], ["0.5", "1", "2", "5", "10", "20", "50", "100"])
            ax.minorticks_off()
            ax.set_ylim(0, 100)
            ax.set_xlabel("lines reviewed, highest scores first (%)")
            ax.set_ylabel("found (%)")
            ax.legend(frameon=False, loc="upper left")
        return self.svg(draw, (5.6, 2.4), "lift curve")

    def trends(self, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
        """A Center's monthly series, a small panel each: lines, entered value, duty rate,
        inspection rate (those there)."""
        def draw(figure: Any) -> None:
            axes = np.atleast_1d(figure.subplots(1, len(series))).ravel()
            for ax, (measure, (months, values)) in zip(axes, series.items()):
                ax.plot(months, values, color="#3b6ea8", marker="o", markersize=2, linewidth=1)
                ax.set_title(measure.replace("_", " "), fontsize=8)
                ax.set_xticks(months[::max(1, (len(months) + 2) // 3)])
                ax.xaxis.set_major_formatter(_month_format)
                ax.tick_params(axis="x", labelsize=6.5)
                if measure == "entered_value":
                    ax.yaxis.set_major_formatter(lambda value, _: _money(value).replace(" ", ""))
                else:
                    ax.yaxis.get_major_formatter().set_useOffset(False)
        return self.svg(draw, (1.9 * len(series) + 0.3, 2.0), "monthly trends")


def _month_format(value: float, _: Any) -> str:
    """A date axis tick as month and year (matplotlib's dates are days since 1970)."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(round(value)))).strftime("%b %y")


def gains(scores: np.ndarray, y: np.ndarray, revenue: np.ndarray | None, points: int = 120) -> dict[str, np.ndarray]:
    """The cumulative gains curve of labelled lines, ranked as :func:`evaluate.metrics`
    ranks them (score descending, ties in file order): at ``points`` shares of the lines,
    spaced evenly on a log scale, the share of violations and of revenue found."""
    n = len(y)
    order = np.argsort(-scores, kind="stable")
    k = np.unique(np.geomspace(1, n, points).round().astype(np.int64)) if n else np.zeros(0, np.int64)
    found = np.cumsum(y[order], dtype=np.float64)
    out = {"share": k / max(n, 1), "found": found[k - 1] / max(found[-1], 1) if n else k * 0.0}
    if revenue is not None and n:
        money = np.cumsum(revenue[order])
        out["revenue"] = money[k - 1] / money[-1] if money[-1] > 0 else np.zeros(len(k))
    return out


# ----------------------------------------------------------------------------- the page


def report(directory: str | os.PathLike[str], hide_ids: bool = False) -> str:
    """The HTML report of a run directory (see the module docstring); with ``hide_ids``,
    importer ids are left out (they are often Social Security or EIN numbers)."""
    run = RunDirectory.read(directory)
    return _Page(run, Charts(), hide_ids).html()


def write_report(directory: str | os.PathLike[str], output: str | os.PathLike[str], hide_ids: bool = False) -> Path:
    """Writes :func:`report` to ``output`` atomically; returns its path."""
    page = report(directory, hide_ids)
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(output)


@dataclass(frozen=True)
class _Center:
    code: str
    name: str
    office: str


class _Page:
    """Builds the page from a read run directory, section by section."""

    def __init__(self, run: RunDirectory, charts: Charts, hide_ids: bool) -> None:
        self.run, self.charts, self.hide_ids = run, charts, hide_ids
        self.centers = self._centers()
        self.evaluation = self._evaluate()

    # -- the facts

    def _centers(self) -> list[_Center]:
        """Every Center of the map, named as the run named them (a run with its own
        Centers file names its own), then any other code the data holds."""
        known = {c.code: _Center(c.code, c.name, c.field_office) for c in CenterMap.default().centers}
        accounts = self.run.accounts
        if "center_name" in accounts.column_names:
            named = accounts.select([c for c in ("center", "center_name", "field_office")
                                     if c in accounts.column_names]).group_by("center").aggregate(
                [("center_name", "min")] + ([("field_office", "min")] if "field_office" in accounts.column_names
                                            else []))
            for row in named.to_pylist():
                if row["center"]:
                    known[row["center"]] = _Center(row["center"], row["center_name_min"] or row["center"],
                                                   row.get("field_office_min") or "")
        codes = set(self.run.lines.counts) | set(pc.unique(accounts.column("center")).to_pylist())
        for code in codes - set(known) - {NO_CENTER, None}:
            known[code] = _Center(code, f"Center {code}", "")
        return [known[c] for c in sorted(known)]

    def _evaluate(self) -> dict[str, Any] | None:
        lines = self.run.lines
        if lines.labelled is None:
            return None
        return evaluate(lines.labelled, label="label", revenue="revenue" if lines.revenue else None, by="center")

    def _account_figures(self) -> dict[str, dict[str, float]]:
        a = self.run.accounts
        table = pa.table({"center": pc.fill_null(pc.cast(a.column("center"), pa.string()), NO_CENTER),
                          "lines": pc.cast(a.column("lines"), pa.float64()),
                          "value": pc.cast(a.column("entered_value"), pa.float64()),
                          "duty": pc.cast(a.column("duty"), pa.float64())})
        grouped = table.group_by("center").aggregate([("lines", "count"), ("lines", "sum"), ("value", "sum"),
                                                       ("duty", "sum")])
        return {row["center"]: {"accounts": row["lines_count"], "lines": row["lines_sum"], "value": row["value_sum"],
                                "duty": row["duty_sum"]} for row in grouped.to_pylist()}

    def _rejects_by_center(self) -> dict[str, int]:
        """Rejected rows per Center of their HTS number (where it reads as one), by the map
        in force on the data's last day."""
        rejects = self.run.rejects
        if "hts_code" not in rejects.column_names or rejects.num_rows == 0:
            return {}
        model = self.run.summary.get("model")
        on = _date(model.get("last_date") if isinstance(model, dict) else None) or dt.date.today()
        counts = pc.value_counts(rejects.column("hts_code").combine_chunks())
        centers = CenterMap.default()
        out: dict[str, int] = {}
        for row in counts.to_pylist():
            try:
                code = centers.center_of(row["values"], on) if row["values"] else None
            except ValueError:
                code = None
            out[code or NO_CENTER] = out.get(code or NO_CENTER, 0) + row["counts"]
        return out

    # -- the page

    def html(self) -> str:
        figures = self._account_figures()
        rejects = self._rejects_by_center()
        sections = [self._center_section(k, c, figures.get(c.code, {}), rejects.get(c.code, 0))
                    for k, c in enumerate(self.centers, 1)]
        title = f"ceecore report: {self.run.path.resolve().name}"
        contents = "".join(f'<li><a href="#center-{k}">{_e(c.code)} {_e(c.name)}</a></li>'
                           for k, c in enumerate(self.centers, 1))
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{_e(title)}</h1>{self._run_facts()}</header>\n"
            f'<nav id="contents"><h2>Contents</h2><ol><li><a href="#overview">Overview</a></li>{contents}</ol></nav>\n'
            f"{self._overview(figures, rejects)}\n" + "\n".join(sections) + "\n"
            f"<footer>ceecore {_e(__version__)}</footer>\n</body>\n</html>\n"
        )

    def _run_facts(self) -> str:
        s = self.run.summary
        model = s.get("model") if isinstance(s.get("model"), dict) else {}
        facts = [("lines scored", _count(s.get("lines_scored"))), ("rejected rows", _count(s.get("rejected"))),
                 ("accounts", _count(s.get("accounts"))),
                 ("baselines from", f"{model.get('first_date', '?')} to {model.get('last_date', '?')}"),
                 ("ceecore", s.get("version", "?"))]
        return "<p class=\"facts\">" + " · ".join(f"{_e(k)} <b>{_e(v)}</b>" for k, v in facts) + "</p>"

    def _overview(self, figures: dict[str, dict[str, float]], rejects: dict[str, int]) -> str:
        rows = []
        for k, c in enumerate(self.centers, 1):
            f = figures.get(c.code, {})
            rows.append([(f"#center-{k}", f"{c.code} {c.name}"), _count(f.get("accounts", 0)),
                         _count(f.get("lines", 0)), _count(self.run.lines.counts.get(c.code, 0)),
                         _money(f.get("value", 0.0)), _money(f.get("duty", 0.0)), _count(rejects.get(c.code, 0))])
        orphans = self.run.lines.counts.get(NO_CENTER, 0)
        notes = [f"{_count(orphans)} scored lines are of goods no Center owns (HTS chapters 98, 99 or unmapped)."
                 ] if orphans else []
        by_reason = self.run.summary.get("rejects_by_reason")
        if isinstance(by_reason, dict) and by_reason:
            notes.append("Rejected rows by reason: " + ", ".join(f"{r} {_count(n)}" for r, n in by_reason.items()))
        if self.run.rejects.num_rows and "hts_code" in self.run.rejects.column_names:
            notes.append("A rejected row counts for the Center its HTS number maps to, where it reads as one.")
        notes += self._missing_notes()
        head = ["Center", "accounts", "their lines", "lines of its goods", "entered value", "duty", "rejected rows"]
        evaluation = ""
        if self.evaluation is not None:
            evaluation = "<h3>Detection, all Centers</h3>" + self._detection(self.evaluation["overall"], None)
        return (f'<section id="overview"><h2>Overview</h2>{_table(head, rows, numeric=range(1, 7))}'
                + "".join(f"<p class=\"note\">{_e(n)}</p>" for n in notes) + evaluation + "</section>")

    def _missing_notes(self) -> list[str]:
        run, notes = self.run, []
        if run.lines.label is None:
            notes.append("The scored lines carry no outcomes (violation) or scheme labels: no detection measures.")
        if run.trends is None:
            notes.append("No trends.parquet in this run directory: no trend charts or shifts.")
        elif run.shifts is None:
            notes.append("No shifts.parquet in this run directory: trends are charted, no shifts are flagged.")
        if run.uniformity is None:
            notes.append("No uniformity.parquet in this run directory: no uniformity findings.")
        if "facilitation" not in run.accounts.column_names:
            notes.append("The accounts carry no facilitation tier: no list of accounts eligible for expedited release.")
        return notes

    def _center_section(self, k: int, c: _Center, figures: dict[str, float], rejects: int) -> str:
        lines = self.run.lines
        key = [("accounts", _count(figures.get("accounts", 0))), ("their lines", _count(figures.get("lines", 0))),
               ("lines of its goods", _count(lines.counts.get(c.code, 0))),
               ("entered value", _money(figures.get("value", 0.0))), ("duty", _money(figures.get("duty", 0.0))),
               ("rejected rows", _count(rejects))]
        parts = [f'<section class="center" id="center-{k}"><h2>{_e(c.code)} {_e(c.name)}</h2>',
                 f'<p class="office">{_e(c.office)}</p>' if c.office else "",
                 '<dl class="figures">' + "".join(f"<div><dt>{_e(a)}</dt><dd>{_e(b)}</dd></div>" for a, b in key)
                 + "</dl>"]
        histogram = lines.histograms.get(c.code)
        parts.append("<h3>Score distribution</h3>")
        parts.append(_figure(self.charts.scores(histogram), "Lines by score (log scale).")
                     if histogram is not None and histogram.sum() else '<p class="note">No scored lines.</p>')
        parts += [self._worklist(c.code), self._riskiest(c.code), self._center_detection(c.code),
                  self._trends(c.code), self._uniformity(c.code), self._facilitation(c.code), "</section>"]
        return "".join(parts)

    def _id(self, value: Any) -> str:
        return "(hidden)" if self.hide_ids else ("" if value is None else str(value))

    def _worklist(self, code: str) -> str:
        """The Center's worklist: its best lines, and the exploration picks (accounts and
        lines drawn at random, so that outcomes keep arriving from everywhere); the
        accounts picked by score are the riskiest accounts (the next table)."""
        w = self.run.worklist
        rows = w.filter(pc.equal(w.column("center"), code)).to_pylist()
        lines = [r for r in rows if r["kind"] == "line"]
        best = [r for r in lines if r["pick"] != "exploration"]
        picks = [r for r in rows if r["pick"] == "exploration"]
        if not rows:
            return '<h3>Worklist</h3><p class="note">Nothing on the worklist.</p>'
        head = ["kind", "rank", "importer", "entry", "line", "score", "reasons"]

        def table(chosen: list[dict[str, Any]]) -> str:
            return _table(head, [[r["kind"], r["rank"], self._id(r["importer_id"]), r["entry_number"] or "",
                                  r["line_number"] or "", _score(r["score"]), _reasons(r["reasons"])] for r in chosen],
                          numeric=(1, 5))

        out = [f"<h3>Worklist</h3><p class=\"note\">{_count(len(rows))} rows in worklist.parquet: "
               f"{_count(len(rows) - len(lines))} accounts and {_count(len(lines))} lines, "
               f"{_count(len(picks))} of them exploration picks.</p>"]
        if best:
            out.append("<h4>Riskiest lines</h4>" + table(best[:TABLE_ROWS]) + _more(len(best), "worklist.parquet"))
        if picks:
            out.append("<h4>Exploration picks (drawn at random among the rest)</h4>" + table(picks))
        return "".join(out)

    def _riskiest(self, code: str) -> str:
        a = self.run.accounts
        mine = a.filter(pc.and_(pc.equal(a.column("center"), code),
                                pc.less_equal(a.column("rank_in_center"), TABLE_ROWS)))
        mine = mine.sort_by("rank_in_center").to_pylist()
        if not mine:
            return '<h3>Riskiest accounts</h3><p class="note">No accounts.</p>'
        head = ["rank", "importer", "score", "lines", "entered value", "duty rate", "active", "reasons"]
        body = [[r["rank_in_center"], self._id(r["importer_id"]), _score(r["score"]), _count(r["lines"]),
                 _money(r["entered_value"]), _percent(r["effective_duty_rate"]),
                 f"{r['first_entry_date']} to {r['last_entry_date']}", _reasons(r["reasons"])] for r in mine]
        return "<h3>Riskiest accounts</h3>" + _table(head, body, numeric=(0, 2, 3, 4, 5))

    def _center_detection(self, code: str) -> str:
        if self.evaluation is None:
            return ""
        m = self.evaluation.get("groups", {}).get(code)
        if not m or not m["lines"]:
            return '<h3>Detection</h3><p class="note">No labelled lines in this Center.</p>'
        return "<h3>Detection</h3>" + self._detection(m, code)

    def _detection(self, m: dict[str, Any], code: str | None) -> str:
        """Precision, recall and revenue at the top 1-10% of labelled lines, with the lift
        (precision over the base rate) and the gains curve."""
        lines = self.run.lines
        what = "scheme lines (the generator's truth)" if lines.label == "scheme" else "inspected lines"
        head = ["top", "lines", "precision", "recall"] + (["revenue"] if lines.revenue else []) + ["lift"]
        rate = m["violation_rate"] or 0.0
        body = []
        for share in SHARES:
            at = m[f"{share * 100:g}%"]
            body.append([f"{share * 100:g}%", _count(at["lines"]), _fraction(at["precision"]), _fraction(at["recall"])]
                        + ([_fraction(at.get("revenue"))] if lines.revenue else [])
                        + [f"{at['precision'] / rate:.1f}x" if rate and at["precision"] is not None else "–"])
        labelled = lines.labelled
        if code is not None:
            labelled = labelled.filter(pc.equal(labelled.column("center"), code))
        y = _numbers(labelled.column("label"))
        curve = gains(_numbers(labelled.column("score")), y,
                      _numbers(labelled.column("revenue")) if lines.revenue else None)
        auc = "–" if m["auc"] is None else f"{m['auc']:.3f}"
        summary = (f"{_count(m['lines'])} {what}, {_count(m['violations'])} positive "
                   f"(rate {_fraction(m['violation_rate'])}); AUC {auc}.")
        return (f'<p class="note">{_e(summary)}</p><div class="pair">' + _table(head, body, numeric=range(1, len(head)))
                + _figure(self.charts.lift(curve), "Share found against share of lines reviewed (log scale).")
                + "</div>")

    def _trends(self, code: str) -> str:
        trends = self.run.trends
        if trends is None:
            return ""
        mine = trends.filter(pc.and_(pc.equal(trends.column("center"), code),
                                     pc.equal(pc.fill_null(trends.column("key"), ""), "")))
        series = {}
        for measure in ("lines", "entered_value", "duty_rate", "inspection_rate"):
            rows = mine.filter(pc.equal(mine.column("measure"), measure)).sort_by("month")
            values = _numbers(rows.column("value"))
            if rows.num_rows and np.isfinite(values).any():
                series[measure] = (rows.column("month").to_numpy(zero_copy_only=False), values)
        out = ["<h3>Trends</h3>"]
        out.append(_figure(self.charts.trends(series), "Monthly series of this Center's lines.") if series
                   else '<p class="note">No monthly series for this Center.</p>')
        shifts = self.run.shifts
        if shifts is not None:
            flagged = shifts.filter(pc.and_(pc.equal(shifts.column("center"), code),
                                            pc.less(shifts.column("q_value"), SHIFT_Q))).sort_by("q_value")
            rows = flagged.to_pylist()
            head = ["measure", "key", "month", "before", "after", "change", "q", "finding"]
            body = [[r["measure"], r["key"], r["month"], _value(r["before"]), _value(r["after"]),
                     _value(r["change"]), _p(r["q_value"]), r["finding"]] for r in rows[:TABLE_ROWS]]
            out.append(f"<h4>Shifts flagged (FDR q &lt; {SHIFT_Q:g})</h4>"
                       + (_table(head, body, numeric=(3, 4, 5, 6)) + _more(len(rows), "shifts.parquet") if rows
                          else '<p class="note">None.</p>'))
        return "".join(out)

    def _uniformity(self, code: str) -> str:
        u = self.run.uniformity
        if u is None:
            return ""
        found = u.filter(pc.and_(pc.equal(u.column("center"), code),
                                 pc.less(u.column("q_value"), FINDING_Q))).sort_by("q_value").to_pylist()
        out = f"<h3>Uniformity across ports (FDR q &lt; {FINDING_Q:g})</h3>"
        if not found:
            return out + '<p class="note">No finding.</p>'
        head = ["level", "HTS", "origin", "port", "measure", "at port", "elsewhere", "effect", "lines", "q", "finding"]
        body = [[r["level"], r["hts"], r["origin"], r["port"], r["measure"], _value(r["port_value"]),
                 _value(r["other_value"]), _value(r["effect"]), f"{_count(r['port_lines'])} / {_count(r['other_lines'])}",
                 _p(r["q_value"]), r["finding"]] for r in found[:TABLE_ROWS]]
        return out + _table(head, body, numeric=(5, 6, 7, 8, 9)) + _more(len(found), "uniformity.parquet")

    def _facilitation(self, code: str) -> str:
        a = self.run.accounts
        if "facilitation" not in a.column_names:
            return ""
        mine = a.filter(pc.and_(pc.equal(a.column("center"), code), pc.equal(a.column("facilitation"), "expedite")))
        out = f"<h3>Eligible for expedited release</h3><p class=\"note\">{_count(mine.num_rows)} accounts.</p>"
        if not mine.num_rows:
            return out
        rows = mine.sort_by([("lines", "descending"), ("importer_id", "ascending")]).slice(0, TABLE_ROWS).to_pylist()
        head = ["importer", "lines", "entered value", "active", "score", "why"]
        body = [[self._id(r["importer_id"]), _count(r["lines"]), _money(r["entered_value"]),
                 f"{r['first_entry_date']} to {r['last_entry_date']}", _score(r["score"]),
                 r.get("facilitation_reasons") or ""] for r in rows]
        return out + _table(head, body, numeric=(1, 2, 4)) + _more(mine.num_rows, "accounts.parquet")


# ----------------------------------------------------------------------------- HTML helpers


def _e(value: Any) -> str:
    """Text from anywhere (the data, file names), escaped for HTML text and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()) -> str:
    """A table; each cell is text (escaped) or a pair (``#anchor``, text): a link within the page."""
    right = set(numeric)

    def cell(k: int, value: Any, tag: str = "td") -> str:
        attr = ' class="n"' if k in right else ""
        if isinstance(value, tuple):
            anchor, text = value
            return f'<{tag}{attr}><a href="{_e(anchor)}">{_e(text)}</a></{tag}>'
        return f"<{tag}{attr}>{_e(value)}</{tag}>"

    header = "".join(cell(k, h, "th") for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell(k, v) for k, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<div class=\"table\"><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _more(total: int, where: str) -> str:
    return f'<p class="note">{_count(total - TABLE_ROWS)} more in {_e(where)}.</p>' if total > TABLE_ROWS else ""


def _count(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
        return f"{int(value):,}"
    return "–" if value is None else str(value)  # (a summary.json edited by hand)


def _money(value: Any) -> str:
    if value is None:
        return "–"
    v = float(value)
    for size, unit in ((1e9, "bn"), (1e6, "M")):
        if abs(v) >= size:
            return f"${v / size:,.2f} {unit}"
    return f"${v:,.0f}"


def _percent(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}%"


def _fraction(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _score(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _value(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4g}"


def _p(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2g}"


def _reasons(value: Any) -> str:
    return ", ".join(str(v) for v in value or []) or "–"


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


_CSS = """
:root { --ink: #1d2733; --muted: #5b6775; --rule: #d9dee4; --band: #f4f6f8; --accent: #3b6ea8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; } h2 { font-size: 1.25rem; margin: 2rem 0 .3rem;
  border-bottom: 2px solid var(--accent); padding-bottom: .2rem; }
h3 { font-size: 1.02rem; margin: 1.3rem 0 .4rem; } h4 { font-size: .92rem; margin: .8rem 0 .3rem; color: var(--muted); }
a { color: var(--accent); }
.facts, .note, .office, figcaption, footer { color: var(--muted); }
.note { margin: .3rem 0; font-size: .9rem; }
nav ol { columns: 2; padding-left: 1.4rem; margin: .3rem 0; }
dl.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(9.5rem, 1fr)); gap: .5rem; margin: .6rem 0; }
dl.figures div { background: var(--band); border-radius: 4px; padding: .45rem .6rem; }
dt { font-size: .78rem; color: var(--muted); } dd { margin: 0; font-size: 1.1rem; font-weight: 600; }
.table { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .82rem; margin: .3rem 0; }
th, td { text-align: left; padding: .22rem .45rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { background: var(--band); font-weight: 600; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: .4rem 0 .8rem; } figcaption { font-size: .8rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
.pair { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
.pair > .table { flex: 1 1 22rem; } .pair > figure { flex: 0 1 34rem; margin-top: .3rem; }
footer { margin-top: 3rem; font-size: .8rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav { break-after: page; }
  section.center { break-before: page; }
  h2, h3, h4 { break-after: avoid; }
  figure, tr, dl.figures { break-inside: avoid; }
  thead { display: table-header-group; }
  .table { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""
