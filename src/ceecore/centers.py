"""The ten Centers of Excellence and Expertise and the HTS -> Center map.

CBP assigns each importer to one Center by the industry of what it imports, and
the industries are defined by HTS numbers published (and changed) in Federal
Register notices. The map is therefore data, not code: a dated table of
chapter defaults and heading exceptions shipped in ``ceecore/data`` that a
user can extend or replace with the official list.

Lookup rule: a heading (4-digit) rule beats a chapter (2-digit) rule; a rule
with an empty center means "no Center" (chapters 98 and 99, which carry
special provisions reported beside a line's real HTS number); anything
unmapped has no Center. Rules are in force from ``effective_from``
(inclusive) to ``effective_to`` (exclusive); an empty date is open.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pyarrow as pa

__all__ = [
    "Center",
    "Rule",
    "CenterMap",
    "Override",
    "load_overrides",
]

_EPOCH = _dt.date(1970, 1, 1)
_INT32_MIN = int(np.iinfo(np.int32).min)
_LEVEL_DIGITS = {"chapter": 2, "heading": 4}
_CODE_RE = re.compile(r"\d{3}")
_HTS_DROP = str.maketrans("", "", ". -")

_RULE_COLUMNS = ("level", "prefix", "center", "effective_from", "effective_to", "source")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Center:
    """One Center: 3-digit code, name and the field office that hosts it."""

    code: str
    name: str
    field_office: str


@dataclass(frozen=True)
class Rule:
    """One mapping row: HTS ``prefix`` at ``level`` belongs to ``center``.

    ``center`` is None for "no Center". Dates are inclusive/exclusive; None is
    open. ``source`` cites the Federal Register notice, or says "inferred".
    """

    level: str
    prefix: str
    center: str | None
    effective_from: _dt.date | None = None
    effective_to: _dt.date | None = None
    source: str = "user"

    def in_force(self, on: _dt.date) -> bool:
        """Whether the rule applies on date ``on``."""
        return (self.effective_from is None or self.effective_from <= on) and (
            self.effective_to is None or on < self.effective_to
        )


@dataclass(frozen=True)
class Override:
    """A manual Center assignment for one importer (e.g. after an appeal)."""

    center: str
    note: str


# --------------------------------------------------------------------------- CSV


def _read_csv(
    path: PathLike, text: str | None, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) with stripped values; check the header."""
    name = os.fspath(path)
    if text is None:
        try:
            with open(name, encoding="utf-8-sig", newline="") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"{name}: cannot read: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not UTF-8 text (byte {e.start})") from None
    try:
        yield from _csv_rows(name, csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")), required, optional)
    except csv.Error as e:
        raise ValueError(f"{name}: not a CSV file: {e}") from None


def _csv_rows(
    name: str, reader: csv.DictReader[str], required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of ``reader`` once its header is checked."""
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ValueError(f"{name}: empty file, expected columns {','.join(required + optional)}")
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required + optional]
    if missing or unknown or len(set(header)) != len(header):
        raise ValueError(
            f"{name}: line 1: header {','.join(header)!r} must have columns "
            f"{','.join(required)}" + (f" (optional: {','.join(optional)})" if optional else "")
        )
    reader.fieldnames = header
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise ValueError(f"{name}: line {line}: more fields than the header has")
        yield line, {k: (v or "").strip() for k, v in raw.items()}


def _parse_date(value: str, where: str, column: str) -> _dt.date | None:
    if not value:
        return None
    try:
        return _dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {column} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def _parse_centers(path: PathLike, text: str | None = None) -> list[Center]:
    out: list[Center] = []
    seen: dict[str, int] = {}
    name = os.fspath(path)
    for line, row in _read_csv(path, text, ("code", "name"), ("field_office",)):
        where = f"{name}: line {line}"
        code = row["code"]
        if not _CODE_RE.fullmatch(code):
            raise ValueError(f"{where}: center code {code!r} is not 3 digits")
        if code in seen:
            raise ValueError(f"{where}: center code {code} already on line {seen[code]}")
        if not row["name"]:
            raise ValueError(f"{where}: center {code} has no name")
        seen[code] = line
        out.append(Center(code, row["name"], row.get("field_office", "")))
    return out


def _parse_rules(
    path: PathLike, text: str | None = None, default_source: str = "user"
) -> list[tuple[Rule, str]]:
    out: list[tuple[Rule, str]] = []
    name = os.fspath(path)
    for line, row in _read_csv(path, text, _RULE_COLUMNS[:5], ("source",)):
        where = f"{name}: line {line}"
        level, prefix = row["level"].lower(), row["prefix"]
        if level not in _LEVEL_DIGITS:
            raise ValueError(f"{where}: level {row['level']!r} must be 'chapter' or 'heading'")
        digits = _LEVEL_DIGITS[level]
        if len(prefix) != digits or not prefix.isdigit():
            raise ValueError(f"{where}: {level} prefix {prefix!r} must be {digits} digits")
        start = _parse_date(row["effective_from"], where, "effective_from")
        end = _parse_date(row["effective_to"], where, "effective_to")
        rule = Rule(level, prefix, row["center"] or None, start, end,
                    row.get("source") or default_source)
        out.append((rule, where))
    return out


# --------------------------------------------------------------------------- map


def _days(d: _dt.date) -> int:
    return (d - _EPOCH).days


def _compact(numbers: Iterable[int], width: int) -> str:
    """[28, 29, 30, 44] -> '28-30,44' (zero-padded to ``width``)."""
    parts: list[str] = []
    run: list[int] = []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            parts.append(_run_text(run, width))
        run = [n]
    if run:
        parts.append(_run_text(run, width))
    return ",".join(parts)


def _run_text(run: list[int], width: int) -> str:
    a, b = run[0], run[-1]
    return f"{a:0{width}d}" if a == b else f"{a:0{width}d}-{b:0{width}d}"


class CenterMap:
    """Centers (ordered by code) plus the dated HTS mapping rules.

    Immutable once built. Use :meth:`default` for the shipped table and
    :meth:`from_files` to load or extend it from CSV files.
    """

    def __init__(self, centers: Iterable[Center], rules: Iterable[Rule]) -> None:
        self._init(list(centers), [(r, f"rule {i + 1}") for i, r in enumerate(rules)])

    def _init(self, centers: list[Center], rules: list[tuple[Rule, str]]) -> None:
        codes = [c.code for c in centers]
        bad = [code for code in codes if not _CODE_RE.fullmatch(code)]
        if bad:
            raise ValueError(f"center codes must be 3 digits, got {bad}")
        if not centers:
            raise ValueError("a CenterMap needs at least one center")
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate center codes in {codes}")
        if len(centers) > 127:
            raise ValueError(f"{len(centers)} centers: at most 127 fit the int8 lookup table")
        self._centers = tuple(sorted(centers, key=lambda c: c.code))
        self._codes = tuple(c.code for c in self._centers)
        self._index = {code: i for i, code in enumerate(self._codes)}
        _check_rules(rules, self._index)
        self._rules = tuple(sorted((r for r, _ in rules), key=_rule_order))
        self._by_key: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for r in self._rules:
            self._by_key[(r.level, r.prefix)] = self._by_key.get((r.level, r.prefix), ()) + (r,)
        self._tables: tuple[np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------- loading

    @classmethod
    def default(cls) -> CenterMap:
        """The shipped map (``ceecore/data/*.csv``), loaded once and shared."""
        return _default_map()

    @classmethod
    def from_files(
        cls,
        centers: PathLike | None = None,
        mapping: PathLike | None = None,
        replace: bool = False,
    ) -> CenterMap:
        """Build a map from user CSV files on top of the default one.

        ``centers``: ``code,name,field_office``. ``mapping``: ``level,prefix,
        center,effective_from,effective_to[,source]`` (source defaults to
        "user"). With ``replace=False`` a file extends the default: a user
        center replaces the default center with the same code, and user rules
        replace *all* default rules with the same level and prefix (so a user
        row for heading 8511 drops both dated default 8511 rows). With
        ``replace=True`` each given file replaces its default entirely. A file
        not given keeps the default. Bad rows raise ValueError naming the file
        and line.
        """
        base_centers, base_rules = _default_parts()
        if centers is not None:
            user = _parse_centers(centers)
            if replace:
                merged_centers = user
            else:
                by_code = {c.code: c for c in base_centers}
                by_code.update((c.code, c) for c in user)
                merged_centers = list(by_code.values())
        else:
            merged_centers = list(base_centers)
        if mapping is not None:
            user_rules = _parse_rules(mapping)
            if replace:
                merged_rules = user_rules
            else:
                keys = {(r.level, r.prefix) for r, _ in user_rules}
                merged_rules = [x for x in base_rules if (x[0].level, x[0].prefix) not in keys]
                merged_rules += user_rules
        else:
            merged_rules = list(base_rules)
        self = cls.__new__(cls)
        self._init(merged_centers, merged_rules)
        return self

    # ------------------------------------------------------------- accessors

    @property
    def centers(self) -> tuple[Center, ...]:
        """The centers, ordered by code."""
        return self._centers

    @property
    def codes(self) -> tuple[str, ...]:
        """Center codes, ordered; a code's position is its index in kernels."""
        return self._codes

    @property
    def rules(self) -> tuple[Rule, ...]:
        """All mapping rules, ordered by chapter, then chapter rule first."""
        return self._rules

    def index_of(self, code: str) -> int:
        """Position of ``code`` in :attr:`codes` (the kernel's center index)."""
        try:
            return self._index[code]
        except KeyError:
            raise ValueError(f"unknown center code {code!r}; known: {', '.join(self._codes)}") from None

    def center(self, code: str) -> Center:
        """The :class:`Center` with this code."""
        return self._centers[self.index_of(code)]

    def __repr__(self) -> str:
        return f"CenterMap({len(self._centers)} centers, {len(self._rules)} rules)"

    # ---------------------------------------------------------------- lookup

    def center_of(self, hts: str, on: _dt.date) -> str | None:
        """Center code for an HTS number on a date, or None (no Center).

        Reference implementation of what the kernel does with
        :meth:`lookup_tables`. ``hts`` may contain dots; it needs at least
        the 4-digit heading.
        """
        digits = str(hts).strip().translate(_HTS_DROP)
        if len(digits) < 4 or not digits.isdigit():
            raise ValueError(f"HTS number {hts!r} needs at least 4 digits")
        if isinstance(on, _dt.datetime):
            on = on.date()
        for level, prefix in (("heading", digits[:4]), ("chapter", digits[:2])):
            for rule in self._by_key.get((level, prefix), ()):
                if rule.in_force(on):
                    return rule.center
        return None

    def lookup_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Dense tables for the compiled lookup (built once, read-only).

        Returns ``(epoch_starts, table)``: ``epoch_starts`` is sorted int32
        days since 1970-01-01, its first element the int32 minimum, one per
        distinct effective date; ``table`` is int8 ``(n_epochs, 10000)``,
        C-contiguous, ``table[e, heading]`` the center index (see
        :attr:`codes`) or -1. For a day ``d`` the epoch is
        ``searchsorted(epoch_starts, d, side="right") - 1``.
        """
        if self._tables is None:
            self._tables = self._build_tables()
        return self._tables

    def _build_tables(self) -> tuple[np.ndarray, np.ndarray]:
        bounds = sorted(
            {_days(d) for r in self._rules for d in (r.effective_from, r.effective_to) if d is not None}
        )
        starts = [_INT32_MIN] + bounds
        table = np.full((len(starts), 10000), -1, dtype=np.int8)
        for e, start in enumerate(starts):
            live = [
                r for r in self._rules
                if (r.effective_from is None or _days(r.effective_from) <= start)
                and (r.effective_to is None or start < _days(r.effective_to))
            ]
            for r in live:
                if r.level == "chapter":
                    lo = int(r.prefix) * 100
                    table[e, lo:lo + 100] = self._value(r)
            for r in live:
                if r.level == "heading":
                    table[e, int(r.prefix)] = self._value(r)
        epoch_starts = np.asarray(starts, dtype=np.int32)
        epoch_starts.flags.writeable = False
        table.flags.writeable = False
        return epoch_starts, table

    def _value(self, rule: Rule) -> int:
        return -1 if rule.center is None else self._index[rule.center]

    # ---------------------------------------------------------------- arrow

    def centers_table(self, on: _dt.date | None = None) -> pa.Table:
        """One row per center, as the map stands on ``on`` (default today).

        Columns: code, name, field_office, chapters (e.g. "28-38"),
        plus_headings (headings held outside its chapters) and minus_headings
        (headings of its chapters held elsewhere or by no Center).
        """
        on = on or _dt.date.today()
        chapters: dict[str, list[int]] = {c: [] for c in self._codes}
        chapter_center: dict[str, str | None] = {}
        for r in self._rules:
            if r.level == "chapter" and r.in_force(on):
                chapter_center[r.prefix] = r.center
                if r.center is not None:
                    chapters[r.center].append(int(r.prefix))
        plus: dict[str, list[int]] = {c: [] for c in self._codes}
        minus: dict[str, list[int]] = {c: [] for c in self._codes}
        for r in self._rules:
            if r.level != "heading" or not r.in_force(on):
                continue
            home = chapter_center.get(r.prefix[:2])
            if r.center == home:
                continue
            if r.center is not None:
                plus[r.center].append(int(r.prefix))
            if home is not None:
                minus[home].append(int(r.prefix))
        return pa.table({
            "code": pa.array(self._codes, pa.string()),
            "name": pa.array([c.name for c in self._centers], pa.string()),
            "field_office": pa.array([c.field_office for c in self._centers], pa.string()),
            "chapters": pa.array([_compact(chapters[c], 2) for c in self._codes], pa.string()),
            "plus_headings": pa.array([_compact(plus[c], 4) for c in self._codes], pa.string()),
            "minus_headings": pa.array([_compact(minus[c], 4) for c in self._codes], pa.string()),
        })

    def rules_table(self) -> pa.Table:
        """All mapping rules, one row each, in :attr:`rules` order."""
        rs = self._rules
        return pa.table({
            "level": pa.array([r.level for r in rs], pa.string()),
            "prefix": pa.array([r.prefix for r in rs], pa.string()),
            "center": pa.array([r.center for r in rs], pa.string()),
            "effective_from": pa.array([r.effective_from for r in rs], pa.date32()),
            "effective_to": pa.array([r.effective_to for r in rs], pa.date32()),
            "source": pa.array([r.source for r in rs], pa.string()),
        })


def _rule_order(r: Rule) -> tuple[str, bool, str, _dt.date]:
    return (r.prefix[:2], r.level != "chapter", r.prefix, r.effective_from or _dt.date.min)


def _check_rules(rules: list[tuple[Rule, str]], index: dict[str, int]) -> None:
    """Validate rules against the center set; errors name the rule's origin."""
    groups: dict[tuple[str, str], list[tuple[Rule, str]]] = {}
    for rule, where in rules:
        if rule.level not in _LEVEL_DIGITS:
            raise ValueError(f"{where}: level {rule.level!r} must be 'chapter' or 'heading'")
        digits = _LEVEL_DIGITS[rule.level]
        if len(rule.prefix) != digits or not rule.prefix.isdigit():
            raise ValueError(f"{where}: {rule.level} prefix {rule.prefix!r} must be {digits} digits")
        if rule.center is not None and rule.center not in index:
            raise ValueError(
                f"{where}: unknown center code {rule.center!r} (known: {', '.join(index)})"
            )
        start, end = rule.effective_from, rule.effective_to
        if start is not None and end is not None and start >= end:
            raise ValueError(f"{where}: effective_from {start} is not before effective_to {end}")
        groups.setdefault((rule.level, rule.prefix), []).append((rule, where))
    for (level, prefix), group in groups.items():
        group.sort(key=lambda x: x[0].effective_from or _dt.date.min)
        for (a, wa), (b, wb) in zip(group, group[1:]):
            a_end = a.effective_to or _dt.date.max
            b_start = b.effective_from or _dt.date.min
            if b_start < a_end:
                raise ValueError(
                    f"{wb}: {level} {prefix} dates overlap the rule at {wa}"
                )


def _read_default(name: str) -> str:
    return resources.files("ceecore").joinpath("data").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _default_parts() -> tuple[tuple[Center, ...], tuple[tuple[Rule, str], ...]]:
    centers = _parse_centers("ceecore/data/centers.csv", _read_default("centers.csv"))
    rules = _parse_rules(
        "ceecore/data/hts_centers.csv", _read_default("hts_centers.csv"), default_source="inferred"
    )
    return tuple(centers), tuple(rules)


@functools.cache
def _default_map() -> CenterMap:
    centers, rules = _default_parts()
    self = CenterMap.__new__(CenterMap)
    self._init(list(centers), list(rules))
    return self


# ------------------------------------------------------------------ overrides


def load_overrides(path: PathLike, centers: CenterMap | None = None) -> dict[str, Override]:
    """Read manual importer -> Center assignments from ``importer_id,center[,note]``.

    Center codes are checked against ``centers`` (default map if None). An
    importer listed twice with the same center keeps its first row; with
    different centers it is an error naming both lines.
    """
    cmap = centers if centers is not None else CenterMap.default()
    name = os.fspath(path)
    out: dict[str, Override] = {}
    first_line: dict[str, int] = {}
    for line, row in _read_csv(path, None, ("importer_id", "center"), ("note",)):
        where = f"{name}: line {line}"
        importer, code = row["importer_id"], row["center"]
        if not importer:
            raise ValueError(f"{where}: importer_id is empty")
        if code not in cmap.codes:
            raise ValueError(
                f"{where}: unknown center code {code!r} for importer {importer} "
                f"(known: {', '.join(cmap.codes)})"
            )
        if importer in out:
            if out[importer].center != code:
                raise ValueError(
                    f"{where}: importer {importer} overridden to {code}, but to "
                    f"{out[importer].center} on line {first_line[importer]}"
                )
            continue
        out[importer] = Override(code, row.get("note", ""))
        first_line[importer] = line
    return out
