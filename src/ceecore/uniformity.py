"""Uniformity across ports: identical activity, different treatment (``ceecore uniformity``).

A Center judges the same goods the same way at every port. For each Center and each
group of identical activity (HTS10 x origin; HTS6 x origin; the Center's goods as a
whole) :class:`Uniformity` compares every port's lines with the same group's lines at
all the other ports:

- declared (HTS10 and HTS6 groups): the effective duty rate of the lines claiming no
  preference (a claim's duty is 0 by right; the claims are compared on their own), the
  share of lines claiming a preference, the unit value (HTS10 only: other goods are not
  comparable), and the HTS10 numbers used within the HTS6 subheading (``hts_mix``);
- decided, where the outcome columns exist (every level): the inspection rate, the
  violation finding rate among inspected lines, the revenue recovered per inspected line.

Tests, each two-sided unless said: rates by Fisher's exact test (conditional on the
margins; the two-sided p-value is twice the smaller one-sided tail, a valid and
conservative choice that needs no search of the support); distributions (duty rate,
unit value, revenue) by the Mann-Whitney rank test on exact histograms, with the tie
correction and a continuity correction; the mix by a one-sided Fisher test of the
port's most over-represented HTS10 number, Bonferroni-corrected over the group's
numbers. Benjamini-Hochberg controls the false discovery rate over all rows.

Lines are the unit of every test: lines of one importer move together, so a port with
one large importer can differ for reasons of that importer (see the README).

The state is exact and mergeable: integer counts and sums per (Center, HTS10, origin,
port) and exact histograms of binned values, so the rank tests run on merged state;
any batching, thread count or merge order gives the same state and the same table.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa

from ceecore._checks import json_metadata
from ceecore._fdr import benjamini_hochberg
from ceecore._kernels._tally import combine
from ceecore._kernels._views import KeyFold
from ceecore.accounts import Intake
from ceecore.centers import CenterMap
from ceecore.fields import SCORING_COLUMNS, line_fields
from ceecore.io import OutputSet
from ceecore.privacy import Pseudonymiser
from ceecore.schema import ColumnMapping

if TYPE_CHECKING:
    from ceecore.pipeline import IntakeStats

__all__ = ["LEVELS", "MEASURES", "MIN_LINES", "RESULT_SCHEMA", "STATE_SCHEMA", "Uniformity", "comparison_table",
           "fisher_greater", "fisher_two_sided", "rank_test", "read_uniformity", "uniformity"]

LEVELS: tuple[str, ...] = ("center", "hts6", "hts10")
TABLE_CHUNK = 16_384  # rows of the result table built at a time (their words are Python strings)
MEASURES: tuple[str, ...] = ("duty_rate", "preference_share", "unit_value", "hts_mix", "inspection_rate",
                             "violation_rate", "revenue_per_inspected")
# A comparison needs this many lines (for the decided rates: of the measure's own
# denominator, inspected lines for the violation rate) at the port and at the others.
MIN_LINES = 20
FORMAT = "ceecore.uniformity/1"

RESULT_SCHEMA = pa.schema([
    ("center", pa.string()), ("level", pa.string()), ("hts", pa.string()), ("origin", pa.string()),
    ("port", pa.string()), ("measure", pa.string()), ("port_value", pa.float64()), ("other_value", pa.float64()),
    ("effect", pa.float64()), ("port_lines", pa.int64()), ("other_lines", pa.int64()), ("p_value", pa.float64()),
    ("q_value", pa.float64()), ("finding", pa.string()),
])

# The state: one row per (key, field, bin) with its count or sum, and per (key, importer).
# Sums of cents are kept
# as two fields (the high bits and the low 24 bits of each line's amount), so that no
# sum can overflow 64 bits; log unit values are summed in millionths.
COUNTS = ("lines", "claimed", "flagged", "inspected", "judged", "violations", "assessed", "revenue_hi",
          "revenue_lo", "value_hi", "value_lo", "duty_hi", "duty_lo", "uv_lines0", "uv_log0", "uv_lines1", "uv_log1")
HISTOGRAMS = ("duty_rate", "unit_value0", "unit_value1", "revenue")  # (unit value per unit / per kg)
_F = {name: i for i, name in enumerate(COUNTS + HISTOGRAMS)}
_H0 = len(COUNTS)
_IMPORTER = len(_F)  # the state's field of a key's importers: one row each, its hash in ``value``
STATE_SCHEMA = pa.schema([("center", pa.int16()), ("hts", pa.int64()), ("origin", pa.int16()), ("port", pa.int16()),
                          ("field", pa.int8()), ("bin", pa.int32()), ("value", pa.int64())])
_SPLIT = 24                          # cents = hi << 24 | lo
_MAX_CENTS = 10**14                  # $1e12 a line, the contract's limit (revenue is clipped to it)
_LOG_STEP = np.log(1.05)             # unit value and revenue bins: 5% apart
_RATE_BIN_BP = 10                    # duty rate bins: 0.1 percentage point
_MAX_BIN = 1 << 20
_LOG_SCALE = 1e6                     # log unit values summed in millionths


class Uniformity:
    """Exact, mergeable state of port-by-port activity (see the module docstring).

    :meth:`update` folds in an ingested batch (the one parse every job shares), from any
    thread; :meth:`merge` adds another state; :meth:`result` is the comparison table.
    ``centers`` is the map the intakes were parsed with (their Center indices are kept
    as the Centers' codes, so states of different maps with the same codes merge).
    """

    def __init__(self, centers: CenterMap | None = None) -> None:
        self.centers = centers or CenterMap.default()
        self._codes = np.array([int(code) for code in self.centers.codes], np.int64)
        self._done = _Tallies.empty()  # the state in canonical form, as of the last :meth:`tallies`
        self._fold = _Fold()           # the lines and states added since
        self._lock = threading.Lock()

    # ------------------------------------------------------------ updating

    def update(self, intake: Intake) -> None:
        """Folds in the accepted lines of one ingested batch (thread-safe)."""
        rows = self._rows(intake)
        with self._lock:
            self._fold.add(*rows)

    def merge(self, other: Uniformity) -> None:
        """Adds another state's lines (exact: any order gives the same state)."""
        tallies = other.tallies()
        with self._lock:
            self._done = _Tallies.combine([self._done, tallies])

    def tallies(self) -> _Tallies:
        """The state in its canonical form (the fold is laid out and let go: a state read
        once the lines are in holds one copy of itself)."""
        with self._lock:
            if self._fold.n:
                self._done = _Tallies.combine([self._done, self._fold.take()])
            return self._done

    def _rows(self, intake: Intake) -> tuple[Any, ...]:
        """A batch's lines as rows for :meth:`_Fold.add` (a row per line)."""
        f = line_fields(intake)
        keep = f.center >= 0  # lines of no Center (chapters 98, 99) are judged by none
        k1 = (f.hts10[keep] << 10) | f.country[keep]
        k2 = (self._codes[f.center[keep]] << 14) | f.port[keep]
        flagged, inspected, judged, violation, assessed, revenue = _decisions(intake, f.rows[keep])
        claimed = f.spi[keep] != 0
        value, duty = np.where(claimed, 0, f.value_cents[keep]), np.where(claimed, 0, f.duty_cents[keep])
        log_uv, basis = f.log_uv[keep], f.basis[keep]
        has_uv = np.isfinite(log_uv)
        milli = np.where(has_uv, np.rint(np.nan_to_num(log_uv) * _LOG_SCALE), 0).astype(np.int64)
        low = (1 << _SPLIT) - 1
        columns = [
            None, claimed, flagged, inspected, judged, violation, assessed,
            revenue >> _SPLIT, revenue & low, value >> _SPLIT, value & low, duty >> _SPLIT, duty & low,
            has_uv & (basis == 0), np.where(basis == 0, milli, 0), has_uv & (basis == 1), np.where(basis == 1, milli, 0),
        ]
        # Histogram rows: the duty rate of unclaimed lines, the unit value in its basis, the revenue.
        rate_bin = np.minimum(f.rate_bp[keep] // _RATE_BIN_BP, _MAX_BIN)
        uv_bin = np.clip(np.floor(np.nan_to_num(log_uv) / _LOG_STEP), -_MAX_BIN, _MAX_BIN)
        rev_bin = np.where(revenue > 0, 1 + np.floor(np.log(np.maximum(revenue, 1)) / _LOG_STEP), 0)
        rows = [np.flatnonzero(~claimed), np.flatnonzero(has_uv), np.flatnonzero(assessed)]
        field = [np.zeros(len(rows[0])), 1 + basis[rows[1]], np.full(len(rows[2]), 3)]
        bins = [rate_bin[rows[0]], uv_bin[rows[1]], rev_bin[rows[2]]]
        hist_line = np.concatenate(rows)
        return (k1, k2, columns, hist_line, np.concatenate(field).astype(np.int64),
                np.concatenate(bins).astype(np.int64), np.ones(len(hist_line), np.int64),
                np.arange(len(k1)), f.importer[keep].view(np.int64))

    # ------------------------------------------------------------ state

    def to_arrow(self) -> pa.Table:
        """The state as a table (:data:`STATE_SCHEMA`): a row per key and field (and bin,
        for a histogram; and importer, by its hash), zeros left out, sorted."""
        t = self.tallies()
        key, field = np.nonzero(t.counts)
        bins = np.r_[np.zeros(len(key), np.int64), t.hist_bin, np.zeros(len(t.imp_key), np.int64)]
        values = np.r_[t.counts[key, field], t.hist_count, t.imp_hash]
        key = np.r_[key, t.hist_key, t.imp_key]
        field = np.r_[field, t.hist_field + _H0, np.full(len(t.imp_key), _IMPORTER)]
        order = np.lexsort((values, bins, field, key))
        key, field, bins, values = key[order], field[order], bins[order], values[order]
        table = pa.table({"center": pa.array(t.center[key], pa.int16()), "hts": pa.array(t.hts[key], pa.int64()),
                          "origin": pa.array(t.origin[key], pa.int16()), "port": pa.array(t.port[key], pa.int16()),
                          "field": pa.array(field, pa.int8()), "bin": pa.array(bins, pa.int32()),
                          "value": pa.array(values, pa.int64())}, schema=STATE_SCHEMA)
        return table.replace_schema_metadata({b"ceecore.uniformity": json.dumps({"format": FORMAT}).encode()})

    @classmethod
    def from_arrow(cls, table: pa.Table, centers: CenterMap | None = None) -> Uniformity:
        """Rebuilds a state from :meth:`to_arrow` output. The table is untrusted: its form,
        each key's fields given once, every code, bin and count in range, and each key's
        counts consistent (no more inspected lines than lines, histograms adding up to
        their counts) are checked."""
        meta = json_metadata(table.schema.metadata, b"ceecore.uniformity")
        found = meta.get("format") if isinstance(meta, dict) else meta
        if found != FORMAT:
            raise ValueError(f"not a ceecore uniformity state of format {FORMAT} (found {str(found)[:40]!r})")
        if table.column_names != STATE_SCHEMA.names or any(table.column(c).null_count for c in STATE_SCHEMA.names):
            raise ValueError(f"uniformity state must have non-null columns {', '.join(STATE_SCHEMA.names)}")
        try:
            table = table.cast(STATE_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"uniformity state columns of the wrong type: {exc}") from exc
        state = cls(centers)
        state._done = _Tallies.of_rows(table)
        return state

    # ------------------------------------------------------------ comparisons

    def result(self, min_lines: int = MIN_LINES) -> pa.Table:
        """Every testable comparison (:data:`RESULT_SCHEMA`), sorted by q-value, then
        p-value (its log, where it underflows to 0; then by Center, level, HTS, origin,
        port and measure)."""
        return comparison_table([self.comparisons(min_lines)], self.centers)

    def comparisons(self, min_lines: int = MIN_LINES) -> dict[str, np.ndarray]:
        """The testable comparisons as arrays, their p-values not yet adjusted (as logs):
        what :func:`comparison_table` makes the table of."""
        if min_lines < 2:
            raise ValueError("min_lines must be at least 2")
        state = self.tallies()
        if len(state.k1) == 0:
            return {}
        return _joined([_compare(state, level, min_lines) for level in LEVELS])


def comparison_table(parts: list[dict[str, np.ndarray]], centers: CenterMap) -> pa.Table:
    """The table (:data:`RESULT_SCHEMA`) of the :meth:`Uniformity.comparisons` of one
    state, or of the pieces of one (states of the lines of disjoint sets of Centers:
    every comparison is within a Center, so the same table as their merged state's),
    with the false discovery rate controlled over them all."""
    rows = _joined([part for part in parts if part])
    if not rows:
        return RESULT_SCHEMA.empty_table()
    rows["p"] = np.exp(rows["log_p"])
    rows["q"] = benjamini_hochberg(rows["p"])
    order = np.lexsort((rows["measure"], rows["port"], rows["origin"], rows["hts"], rows["level"], rows["center"],
                        rows["log_p"], rows["q"]))
    return _table(rows, order, {int(c.code): c.name for c in centers.centers})


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows of comparisons one after the other (an inspection row's reference to its
    violation row shifted with them)."""
    if not parts:
        return {}
    offset = np.cumsum([0] + [len(found["log_p"]) for found in parts])
    rows = {name: np.concatenate([found[name] for found in parts]) for name in parts[0]}
    rows["violation_row"] = np.concatenate([np.where(found["violation_row"] >= 0, found["violation_row"] + start, -1)
                                            for found, start in zip(parts, offset)])
    return rows


# ---------------------------------------------------------------- the tallies


class _Tallies(NamedTuple):
    """The state as arrays: the distinct keys (``k1``: the HTS number << 10 | origin;
    ``k2``: the Center's code << 14 | port; sorted by k1, then k2), their counts (keys x
    :data:`COUNTS`), their histogram rows (key index, histogram, bin, count; sorted)
    and their importers (key index, importer hash; distinct, sorted)."""

    k1: np.ndarray
    k2: np.ndarray
    counts: np.ndarray
    hist_key: np.ndarray
    hist_field: np.ndarray
    hist_bin: np.ndarray
    hist_count: np.ndarray
    imp_key: np.ndarray
    imp_hash: np.ndarray

    @classmethod
    def empty(cls) -> _Tallies:
        none = np.zeros(0, np.int64)
        return cls(none, none, np.zeros((0, len(COUNTS)), np.int64), none, none, none, none, none, none)

    @classmethod
    def summed(cls, k1: np.ndarray, k2: np.ndarray, counts: np.ndarray, hist_key: np.ndarray,
               hist_field: np.ndarray, hist_bin: np.ndarray, hist_count: np.ndarray, imp_key: np.ndarray,
               imp_hash: np.ndarray) -> _Tallies:
        """Rows of keys (repeats allowed), histogram rows and importer rows (``hist_key``
        and ``imp_key`` index those rows) summed per key, and per key, histogram and bin,
        importers made distinct: exact, in canonical order."""
        if len(k1) == 0:
            return cls.empty()
        order = np.lexsort((k2, k1))
        a, b = k1[order], k2[order]
        first = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
        starts = np.flatnonzero(first)
        key_of = np.empty(len(k1), np.int64)
        key_of[order] = np.cumsum(first) - 1
        packed = (key_of[hist_key] << 24) | (hist_field << 22) | (hist_bin + _MAX_BIN)
        h_order = np.argsort(packed, kind="stable")
        p = packed[h_order]
        h_first = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if len(p) else np.zeros(0, np.int64)
        h_count = np.add.reduceat(hist_count[h_order], h_first) if len(p) else np.zeros(0, np.int64)
        p = p[h_first]
        kept = h_count != 0
        return cls(a[starts], b[starts], np.add.reduceat(counts[order], starts, axis=0), (p >> 24)[kept],
                   ((p >> 22) & 3)[kept], ((p & ((1 << 22) - 1)) - _MAX_BIN)[kept], h_count[kept],
                   *_distinct(key_of[imp_key], imp_hash))

    @classmethod
    def combine(cls, parts: list[_Tallies]) -> _Tallies:
        """The sum of several tallies."""
        parts = [t for t in parts if len(t.k1)]
        if len(parts) <= 1:
            return parts[0] if parts else cls.empty()
        offsets = np.cumsum([0] + [len(t.k1) for t in parts])
        return cls.summed(np.concatenate([t.k1 for t in parts]), np.concatenate([t.k2 for t in parts]),
                          np.concatenate([t.counts for t in parts]),
                          np.concatenate([t.hist_key + o for t, o in zip(parts, offsets)]),
                          *(np.concatenate([getattr(t, name) for t in parts])
                            for name in ("hist_field", "hist_bin", "hist_count")),
                          np.concatenate([t.imp_key + o for t, o in zip(parts, offsets)]),
                          np.concatenate([t.imp_hash for t in parts]))

    @classmethod
    def of_rows(cls, table: pa.Table) -> _Tallies:
        """The tallies of a state table (untrusted: see :meth:`Uniformity.from_arrow`)."""
        c = {name: table.column(name).to_numpy().astype(np.int64) for name in STATE_SCHEMA.names}
        digits, number = c["hts"] & 15, c["hts"] >> 4
        bad = [
            ((c["center"] < 0) | (c["center"] > 999)).any() and "a Center code outside 000-999",
            ((digits < 6) | (digits > 10) | (number < 0) | (number >= 10 ** np.clip(digits, 0, 18))).any()
            and "an HTS number that is not 6 to 10 digits",
            ((c["origin"] < 0) | (c["origin"] >= 26 * 26)).any() and "an origin that is not two letters",
            ((c["port"] < 0) | (c["port"] > 9999)).any() and "a port code that is not four digits",
            ((c["field"] < 0) | (c["field"] > _IMPORTER)).any() and "an unknown field",
            (((c["field"] < _H0) | (c["field"] == _IMPORTER)) & (c["bin"] != 0)).any() and "a bin on a count",
            (np.abs(c["bin"]) > _MAX_BIN).any() and "a bin out of range",
            ((c["value"] < 0) & ~np.isin(c["field"], [_F["uv_log0"], _F["uv_log1"], _IMPORTER])).any()
            and "a negative count",
        ]
        problems = [b for b in bad if b]
        if problems:
            raise ValueError(f"uniformity state holds {problems[0]}")
        k1, k2 = (c["hts"] << 10) | c["origin"], (c["center"] << 14) | c["port"]
        importer = c["field"] == _IMPORTER
        who = np.where(importer, c["value"], 0)
        order = np.lexsort((who, c["bin"], c["field"], k2, k1))
        same = [v[order] for v in (k1, k2, c["field"], c["bin"], who)]
        if len(order) > 1 and np.all([v[1:] == v[:-1] for v in same], axis=0).any():
            raise ValueError("uniformity state holds a key's field twice")
        counted = c["field"] < _H0
        rows = np.flatnonzero(counted)
        counts = np.zeros((len(rows), len(COUNTS)), np.int64)
        counts[np.arange(len(rows)), c["field"][rows]] = c["value"][rows]
        # Histogram rows point at a count row of their key (every key has its lines counted).
        none = np.zeros(0, np.int64)
        tallies = cls.summed(k1[rows], k2[rows], counts, *[none] * 6)
        hist, imp = np.flatnonzero(~counted & ~importer), np.flatnonzero(importer)
        pos = _find(tallies.k1, tallies.k2, k1[hist], k2[hist])
        at = _find(tallies.k1, tallies.k2, k1[imp], k2[imp])
        if (pos < 0).any() or (at < 0).any():
            raise ValueError("uniformity state holds histograms or importers of a key without lines")
        t = cls.summed(tallies.k1, tallies.k2, tallies.counts, pos, c["field"][hist] - _H0, c["bin"][hist],
                       c["value"][hist], at, c["value"][imp])
        t.check()
        return t

    def check(self) -> None:
        """Refuses counts that contradict each other."""
        k = self.counts
        if (k[:, _F["lines"]] < 1).any():
            raise ValueError("uniformity state holds a key without lines")
        importers = np.bincount(self.imp_key, minlength=len(self.k1))
        if ((importers < 1) | (importers > k[:, _F["lines"]])).any():
            raise ValueError("uniformity state holds a key with no importer, or more importers than lines")
        if ((k[:, _F["claimed"]] > k[:, _F["lines"]]) | (k[:, _F["flagged"]] > k[:, _F["lines"]])
                | (k[:, _F["inspected"]] > k[:, _F["flagged"]]) | (k[:, _F["judged"]] > k[:, _F["lines"]])
                | (k[:, _F["violations"]] > k[:, _F["judged"]]) | (k[:, _F["assessed"]] > k[:, _F["lines"]])
                | (k[:, _F["uv_lines0"]] + k[:, _F["uv_lines1"]] > k[:, _F["lines"]])).any():
            raise ValueError("uniformity state holds inconsistent counts (say, more inspected lines than lines)")
        hist = {name: self.histogram_totals(name) for name in HISTOGRAMS}
        if ((hist["duty_rate"] != k[:, _F["lines"]] - k[:, _F["claimed"]])
                | (hist["unit_value0"] != k[:, _F["uv_lines0"]]) | (hist["unit_value1"] != k[:, _F["uv_lines1"]])
                | (hist["revenue"] != k[:, _F["assessed"]])).any():
            raise ValueError("uniformity state holds histograms that do not add up to their counts")
        if (np.abs(k.astype(np.float64)) > 2.0**62).any():
            raise ValueError("uniformity state holds counts or sums past 62 bits")

    @property
    def center(self) -> np.ndarray:
        return self.k2 >> 14

    @property
    def port(self) -> np.ndarray:
        return self.k2 & ((1 << 14) - 1)

    @property
    def hts(self) -> np.ndarray:
        return self.k1 >> 10

    @property
    def origin(self) -> np.ndarray:
        return self.k1 & ((1 << 10) - 1)

    def cents(self, name: str) -> np.ndarray:
        return self.counts[:, _F[f"{name}_hi"]].astype(np.float64) * 2.0**_SPLIT + self.counts[:, _F[f"{name}_lo"]]

    def histogram_totals(self, name: str) -> np.ndarray:
        mine = self.hist_field == HISTOGRAMS.index(name)
        return np.bincount(self.hist_key[mine], self.hist_count[mine].astype(np.float64), minlength=len(self.k1)) \
            .astype(np.int64)


class _Fold:
    """The state while lines are folded in, growing with its distinct keys, bins and
    importers, never with the lines, and updated in place (no per-batch sort, no
    re-sorting merges), in one compiled pass per batch (:class:`KeyFold`): each key
    (k1, k2) gets a dense id from a hash table of its 64-bit hash (every line checked
    against the key its id stands for, so a hash collision stops the fold instead of
    mixing two keys) and its counts a row of a growing array; histogram rows are counted
    in a hash table keyed exactly by (id, histogram, bin), importers kept in one keyed by
    the hash of (id, importer) that holds both (checked alike). Integer sums throughout:
    exact in any order. :meth:`take` lays the state out in canonical order."""

    def __init__(self) -> None:
        self._kernel = KeyFold(len(COUNTS), _MAX_BIN)

    @property
    def n(self) -> int:
        return self._kernel.n

    def add(self, k1: np.ndarray, k2: np.ndarray, columns: list[np.ndarray | None], hist_row: np.ndarray,
            hist_field: np.ndarray, hist_bin: np.ndarray, hist_count: np.ndarray, imp_row: np.ndarray,
            imp_hash: np.ndarray) -> None:
        """Adds rows (keys may repeat): per row its key (``k1``, ``k2``) and its value of
        each of :data:`COUNTS` (``columns[i]``; None: 1); histogram rows (``hist_row``
        indexes the rows) and importer rows (the same)."""
        def int64(values: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(values, np.int64)

        self._kernel.add(combine(1, k1, k2), int64(k1), int64(k2),
                         [None if column is None else int64(column) for column in columns],
                         int64(hist_row), int64(hist_field), int64(hist_bin), int64(hist_count), int64(imp_row),
                         int64(imp_hash))

    def take(self) -> _Tallies:
        """The state in canonical order (as :meth:`_Tallies.summed` lays it out), the fold
        emptied as it goes: each part let go once laid out, so the two forms of the state
        are never both held whole."""
        kernel, n = self._kernel, self._kernel.n
        self.__init__()
        if n == 0:
            return _Tallies.empty()
        k1, k2 = kernel.keys()
        order = np.lexsort((k2, k1))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        keys, h_count = kernel.take_histogram()
        packed = keys.view(np.int64)
        hist = (rank[packed >> 24] << 24) | (packed & ((1 << 24) - 1))
        del keys, packed
        h_order = np.argsort(hist)
        hist, h_count = hist[h_order], h_count[h_order]
        del h_order
        pairs = kernel.take_importers()
        importers = _distinct(rank[pairs[:, 0]], pairs[:, 1])
        del pairs
        counts = kernel.counts(order)
        del kernel
        return _Tallies(k1[order], k2[order], counts, hist >> 24, (hist >> 22) & 3,
                        (hist & ((1 << 22) - 1)) - _MAX_BIN, h_count, *importers)


def _distinct(key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (key, value) pairs, sorted."""
    order = np.lexsort((value, key))
    k, v = key[order], value[order]
    keep = np.r_[True, (k[1:] != k[:-1]) | (v[1:] != v[:-1])] if len(k) else np.zeros(0, bool)
    return k[keep], v[keep]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows (a, b) sorted (as ``np.unique(np.c_[a, b], axis=0,
    return_inverse=True)`` gives them, ``a`` non-negative) and each row's index among
    them, by one sort of ``a`` times the distinct ``b`` plus ``b``'s rank (not numpy's
    slow sort of rows)."""
    values, rank = np.unique(b, return_inverse=True)
    pairs, inverse = np.unique(a.astype(np.int64) * len(values) + rank.ravel(), return_inverse=True)
    return np.column_stack([pairs // len(values), values[pairs % len(values)]]), inverse.ravel()


def _find(k1: np.ndarray, k2: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The index of each key (a, b) among the keys (k1, k2), sorted by k1 then k2; -1 where absent."""
    u1, u2 = np.unique(k1), np.unique(k2)

    def rank(values: np.ndarray, of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.minimum(np.searchsorted(values, of), max(len(values) - 1, 0))
        return at, (values[at] == of) if len(values) else np.zeros(len(of), bool)

    (r1, ok1), (r2, ok2) = rank(u1, a), rank(u2, b)
    joint = np.searchsorted(u1, k1) * len(u2) + np.searchsorted(u2, k2)  # sorted as the keys are
    want = r1 * len(u2) + r2
    pos = np.minimum(np.searchsorted(joint, want), max(len(joint) - 1, 0))
    found = ok1 & ok2 & (joint[pos] == want) if len(joint) else np.zeros(len(a), bool)
    return np.where(found, pos, -1)


# ---------------------------------------------------------------- reading a batch


def _decisions(intake: Intake, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per line (0/1): its ``inspected`` flag known, the flag true, its outcome known (of
    an inspected line), a violation found, its revenue known (of an inspected line); and
    the revenue recovered in cents (0 where unknown; clipped to $1e12).

    Each line on its own, so a missing column and a column of nulls read alike: the
    inspection rate counts the lines whose flag is known; an outcome counts where the
    flag is true or unknown (as :func:`ceecore.history.outcomes` does), a revenue where
    the line was inspected (flag true, or unknown with a known outcome).
    """
    batch = intake.canonical
    names = batch.schema.names
    n = len(rows)
    take = pa.array(rows)

    def column(name: str) -> tuple[np.ndarray, np.ndarray]:  # (known, value) per line
        if name not in names:
            return np.zeros(n, bool), np.zeros(n)
        values = batch.column(name).take(take)
        known = values.is_valid().to_numpy(zero_copy_only=False)
        filled = values.fill_null(False if pa.types.is_boolean(values.type) else 0)
        return known, np.asarray(filled.to_numpy(zero_copy_only=False), np.float64)

    flagged, flag = column("inspected")
    known_violation, violation = column("violation")
    known_revenue, revenue = column("revenue_recovered")
    inspected = flagged & (flag > 0)
    judged = known_violation & (inspected | ~flagged)
    assessed = (inspected | judged) & known_revenue & np.isfinite(revenue) & (revenue >= 0)
    cents = np.where(assessed, np.rint(np.clip(np.nan_to_num(revenue), 0, _MAX_CENTS / 100) * 100), 0)
    as_int = [a.astype(np.int64) for a in (flagged, inspected, judged, judged & (violation > 0), assessed)]
    return (*as_int, cents.astype(np.int64))


# ---------------------------------------------------------------- the comparisons


def _groups(state: _Tallies, level: str) -> np.ndarray:
    """Each key's group at ``level`` as one int64: the Center, and the HTS number at the
    level with the origin (a 6-10 digit number * 16 is below 2^38)."""
    if level == "center":
        return state.center.copy()
    hts = state.hts if level == "hts10" else _prefix(state.hts, 6)
    return (state.center << 52) | (hts << 10) | state.origin


def _prefix(hts: np.ndarray, digits: int) -> np.ndarray:
    """The first ``digits`` digits of HTS numbers (in the same number * 16 + length form)."""
    number, length = hts >> 4, hts & 15
    return (number // 10 ** np.maximum(length - digits, 0)) * 16 + digits


def _sums(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact integer sums of ``values`` per ``index`` (n of them)."""
    out = np.zeros(n, np.int64)
    np.add.at(out, index, np.ascontiguousarray(values, np.int64))
    return out


class _Cells:
    """The keys of the state grouped at a level: ``cell`` (a port of a group) per key,
    each cell's ``group``, and the counts of each cell (``mine``) and of the same group
    at the other ports (``other``), summed a count at a time as the tests ask for them
    (a table of every count per cell would hold as much as the state again)."""

    def __init__(self, state: _Tallies, level: str) -> None:
        self.state, self.level = state, level
        groups, self.g = np.unique(_groups(state, level), return_inverse=True)
        self.n_groups = len(groups)
        cells, self.cell = np.unique(self.g * 10000 + state.port, return_inverse=True)
        self.n = len(cells)
        self.group = cells // 10000
        self._mine: dict[str, np.ndarray] = {}

    def mine(self, name: str) -> np.ndarray:
        """Per cell, its lines' sum of the count ``name`` (of :data:`COUNTS`)."""
        if name not in self._mine:
            self._mine[name] = _sums(self.cell, self.state.counts[:, _F[name]], self.n)
        return self._mine[name]

    def other(self, name: str) -> np.ndarray:
        """Per cell, the sum of the count ``name`` over its group's other cells."""
        mine = self.mine(name)
        return _sums(self.group, mine, self.n_groups)[self.group] - mine

    def in_group(self, per_cell: np.ndarray) -> np.ndarray:
        """Per cell, the sum over its group's cells."""
        return np.bincount(self.group, per_cell, minlength=self.n_groups)[self.group]

    def numbers(self) -> np.ndarray:
        """Per cell, how many HTS numbers its group's lines were declared under."""
        pairs = _pairs(self.g, self.state.hts)[0][:, 0]
        return np.bincount(pairs, minlength=self.n_groups)[self.group]

    def importers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per cell, the distinct importers of its lines, and of its group's lines at the
        other ports (an importer at both counts on both sides)."""
        cell, who = _distinct(self.cell[self.state.imp_key], self.state.imp_hash)
        group = self.group[cell]
        order = np.lexsort((who, group))
        g, w = group[order], who[order]
        first = np.r_[True, (g[1:] != g[:-1]) | (w[1:] != w[:-1])] if len(g) else np.zeros(0, bool)
        run = np.cumsum(first) - 1
        only_here = np.empty(len(cell), bool)
        only_here[order] = np.bincount(run)[run] == 1 if len(run) else np.zeros(0, bool)
        in_group = np.bincount(g[first], minlength=self.n_groups)[self.group]
        return np.bincount(cell, minlength=self.n), in_group - np.bincount(cell[only_here], minlength=self.n)

    def rows(self, found: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Rows of comparisons (per ``found["cell"]``) with their Center, group, port and
        the importers behind each side."""
        at = found.pop("cell")
        mine, others = self.importers()
        found["port_importers"], found["other_importers"] = mine[at], others[at]
        any_key = np.zeros(self.n, np.int64)
        any_key[self.cell[::-1]] = np.arange(len(self.cell))[::-1]
        key = any_key[at]
        s = self.state
        found["center"], found["port"] = s.center[key], s.port[key]
        found["level"] = np.full(len(at), LEVELS.index(self.level))
        if self.level == "center":
            found["hts"], found["origin"] = np.full(len(at), -1), np.full(len(at), -1)
        else:
            found["hts"] = s.hts[key] if self.level == "hts10" else _prefix(s.hts[key], 6)
            found["origin"] = s.origin[key]
        # An inspection row also tells the port's violation finding rate (same cell), if compared.
        violation = found["measure"] == MEASURES.index("violation_rate")
        where = np.full(self.n, -1)
        where[at[violation]] = np.flatnonzero(violation)
        found["violation_row"] = np.where(found["measure"] == MEASURES.index("inspection_rate"), where[at], -1)
        return found


class _Rows:
    """The comparisons of one level, gathered measure by measure (per cell: a port of a group)."""

    def __init__(self, n_cells: int, min_lines: int, use: np.ndarray | None = None) -> None:
        self.n, self.min_lines, self.use = n_cells, min_lines, use
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, measure: str, log_p: np.ndarray, port_value: np.ndarray, other_value: np.ndarray,
            effect: np.ndarray, n1: np.ndarray, n2: np.ndarray, detail: np.ndarray | None = None) -> None:
        """Keeps the cells with enough lines on both sides and a p-value (a testable
        difference); p-values as natural logs (they rank where they underflow)."""
        take = (n1 >= self.min_lines) & (n2 >= self.min_lines) & np.isfinite(log_p)
        if self.use is not None:
            take &= self.use
        at = np.flatnonzero(take)
        self.parts.append({"cell": at, "measure": np.full(len(at), MEASURES.index(measure)), "log_p": log_p[at],
                           "port_value": port_value[at], "other_value": other_value[at], "effect": effect[at],
                           "port_lines": n1[at], "other_lines": n2[at],
                           "detail": (detail[at] if detail is not None else np.full(len(at), -1))})

    def rate(self, measure: str, a: np.ndarray, n1: np.ndarray, b: np.ndarray, n2: np.ndarray) -> None:
        """A rate (``a`` of ``n1`` lines at the port, ``b`` of ``n2`` at the others), by Fisher's test."""
        testable = (n1 >= self.min_lines) & (n2 >= self.min_lines) & (a + b > 0) & (a + b < n1 + n2)
        log_p = np.full(self.n, np.nan)
        log_p[testable] = fisher_two_sided(a[testable], n1[testable], a[testable] + b[testable],
                                           n1[testable] + n2[testable], log=True)
        mine, theirs = a / np.maximum(n1, 1), b / np.maximum(n2, 1)
        self.add(measure, log_p, mine, theirs, mine / theirs, n1, n2)

    def table(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate([part[name] for part in self.parts]) for name in self.parts[0]}


def _compare(state: _Tallies, level: str, min_lines: int) -> dict[str, np.ndarray]:
    """Every port against the other ports at one level."""
    c = _Cells(state, level)
    # A subheading declared under one HTS10 number only would repeat that number's rows.
    rows = _Rows(c.n, min_lines, c.numbers() > 1 if level == "hts6" else None)
    with np.errstate(divide="ignore", invalid="ignore"):
        money = {name: np.bincount(c.cell, state.cents(name), minlength=c.n) for name in ("value", "duty", "revenue")}
        others = {name: c.in_group(m) - m for name, m in money.items()}
        hist_cell = c.cell[state.hist_key]

        def rate(measure: str, hits: str, lines: str) -> None:
            rows.rate(measure, c.mine(hits), c.mine(lines), c.other(hits), c.other(lines))

        def ranked(measure: str, which: np.ndarray, port_value: np.ndarray, other_value: np.ndarray) -> None:
            log_p, effect, n1, n2 = rank_test(hist_cell[which], c.group, state.hist_bin[which],
                                              state.hist_count[which], log=True)
            rows.add(measure, log_p, port_value, other_value, effect, n1, n2)

        if level != "center":
            duty = state.hist_field == HISTOGRAMS.index("duty_rate")
            ranked("duty_rate", duty, 100 * money["duty"] / money["value"], 100 * others["duty"] / others["value"])
            del duty
            rate("preference_share", "claimed", "lines")
        if level == "hts10":
            _unit_values(c, hist_cell, ranked)
        if level == "hts6":
            _mix(c, rows)
        rate("inspection_rate", "inspected", "flagged")
        rate("violation_rate", "violations", "judged")
        revenue = state.hist_field == HISTOGRAMS.index("revenue")
        ranked("revenue_per_inspected", revenue, money["revenue"] / 100 / c.mine("assessed"),
               others["revenue"] / 100 / c.other("assessed"))
    return c.rows(rows.table())


def _unit_values(c: _Cells, hist_cell: np.ndarray, ranked: Callable[..., None]) -> None:
    """Unit values of identical goods (HTS10 x origin), in the basis most of the group's
    lines have (per unit of quantity, else per kg): geometric means, by rank test."""
    basis = np.where(c.in_group(c.mine("uv_lines0")) >= c.in_group(c.mine("uv_lines1")), 0, 1)

    def pick(counts: Callable[[str], np.ndarray], name: str) -> np.ndarray:
        return np.where(basis == 0, counts(f"{name}0"), counts(f"{name}1")).astype(np.float64)

    port_value = np.exp(pick(c.mine, "uv_log") / pick(c.mine, "uv_lines") / _LOG_SCALE)
    other_value = np.exp(pick(c.other, "uv_log") / pick(c.other, "uv_lines") / _LOG_SCALE)
    unit_value0, unit_value1 = HISTOGRAMS.index("unit_value0"), HISTOGRAMS.index("unit_value1")
    ranked("unit_value", c.state.hist_field == np.where(basis[hist_cell] == 0, unit_value0, unit_value1),
           port_value, other_value)


def _mix(c: _Cells, rows: _Rows) -> None:
    """The HTS10 numbers used within a subheading (HTS6 x origin): per port, its most
    over-represented number by a one-sided Fisher test, Bonferroni over the subheading's
    numbers (the finding names the number)."""
    s = c.state
    pairs, pair = _pairs(c.cell, s.hts)  # (cell, number)
    a = np.bincount(pair.ravel(), s.counts[:, _F["lines"]], minlength=len(pairs)).astype(np.int64)
    p_cell, p_number = pairs[:, 0], pairs[:, 1]
    p_group = c.group[p_cell]
    numbers, number = _pairs(p_group, p_number)  # (group, number)
    k = np.bincount(number.ravel(), a, minlength=len(numbers)).astype(np.int64)[number.ravel()]
    lines = c.mine("lines")
    n1, n = lines[p_cell], c.in_group(lines).astype(np.int64)[p_cell]
    k_group = np.bincount(numbers[:, 0], minlength=c.n_groups)[p_group]
    over = (a * n > n1 * k) & (k < n)
    p = np.zeros(len(pairs))
    p[over] = fisher_greater(a[over], n1[over], k[over], n[over], log=True)
    p = np.minimum(0.0, p + np.log(k_group))  # (log p-values: 0 is p = 1)
    # Per cell, the number with the smallest p (ties: the lower number).
    order = np.lexsort((p_number, p, p_cell))
    first = order[np.r_[True, p_cell[order][1:] != p_cell[order][:-1]]]
    best = np.full(c.n, -1)
    best[p_cell[first]] = first
    b = np.maximum(best, 0)
    tested = (best >= 0) & over[b]
    share, other_share = a[b] / np.maximum(n1[b], 1), (k[b] - a[b]) / np.maximum(n[b] - n1[b], 1)
    rows.add("hts_mix", np.where(tested, p[b], np.nan), share, other_share, share / other_share, n1[b],
             n[b] - n1[b], p_number[b])


def rank_test(cell: np.ndarray, group: np.ndarray, bins: np.ndarray, counts: np.ndarray, log: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Mann-Whitney test of each cell (a port) against the rest of its group (the
    other ports), on histograms: rows of (``cell``, bin, count); ``group[c]`` is cell
    c's group. Returns per cell the two-sided p-value (normal approximation with the tie
    correction and a continuity correction; NaN where every value ties), the effect
    ``U / (n1 n2)`` (the chance that a port's line is above another port's, ties
    counting half: 0.5 is no difference) and the lines on each side. ``log``: the
    p-values as natural logs."""
    n_cells = len(group)
    n1 = np.zeros(n_cells)
    if len(cell) == 0:
        nan = np.full(n_cells, np.nan)
        return nan, nan, n1.astype(np.int64), n1.astype(np.int64)
    # (Arrays as long as the rows are let go as soon as they are used: a state's
    # histograms hold about a row per line.)
    key = bins.astype(np.int64) - int(bins.min())
    width = int(key.max()) + 1
    key += cell.astype(np.int64) * width
    cb, at = np.unique(key, return_inverse=True)  # (cell, bin), sorted
    del key
    c_count = np.bincount(at, counts.astype(np.float64))
    del at
    c_cell = cb // width
    cb -= c_cell * width                          # (the bin)
    cb += group[c_cell] * width
    gb, gat = np.unique(cb, return_inverse=True)  # (group, bin), sorted
    del cb
    total = np.bincount(gat, c_count)
    g_group = gb // width
    del gb
    others_below = _below(g_group, total)[gat]
    others_below -= _below(c_cell, c_count)
    others_at = total[gat]
    del gat
    others_at -= c_count
    n_groups = int(group.max()) + 1
    u = np.bincount(c_cell, c_count * (others_below + 0.5 * others_at), minlength=n_cells)
    n1 = np.bincount(c_cell, c_count, minlength=n_cells)
    big_n = np.bincount(g_group, total, minlength=n_groups)[group]
    ties = np.bincount(g_group, total**3 - total, minlength=n_groups)[group]
    n2 = big_n - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        var = n1 * n2 / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
        z = np.maximum(np.abs(u - n1 * n2 / 2) - 0.5, 0) / np.sqrt(var)
        log_p = np.where((var > 0) & (n1 > 0) & (n2 > 0), np.minimum(0.0, np.log(2) + _log_normal_sf(z)), np.nan)
        effect = u / (n1 * n2)
    return log_p if log else np.exp(log_p), effect, n1.astype(np.int64), n2.astype(np.int64)


def _below(segment: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, the sum of the rows before it in its segment (rows sorted by segment)."""
    run = np.cumsum(values)
    start = np.searchsorted(segment, segment, side="left")
    return run - values - (run[start] - values[start])


# ---------------------------------------------------------------- exact tests


def _scipy_special() -> Any:
    """scipy.special, imported when a p-value is first computed (not with ceecore)."""
    import scipy.special

    return scipy.special


def _log_normal_sf(z: np.ndarray) -> np.ndarray:
    return _scipy_special().log_ndtr(-z)


def _log_pmf(x: np.ndarray, n1: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log P(X = x) for X hypergeometric: ``n1`` draws from ``n`` lines of which ``k`` hit."""
    gammaln = _scipy_special().gammaln

    def log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)

    return log_choose(k, x) + log_choose(n - k, n1 - x) - log_choose(n, n1)


def _log_tail(x: np.ndarray, n1: np.ndarray, k: np.ndarray, n: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """log P(X >= x) where ``upper``, else log P(X <= x), for X hypergeometric(n, k, n1).

    Summed from x outward, each term from the last by the pmf's ratio, all tails at
    once; x must lie on the side of the tail it sums (at or beyond the mean), so the
    ratios fall and a tail stops once what it could still add is below 1e-13 of its sum
    (the pmf is log-concave: the ratios only fall further)."""
    x, n1, k, n = (np.asarray(v, np.float64) for v in (x, n1, k, n))
    lo, hi = np.maximum(0.0, n1 + k - n), np.minimum(n1, k)
    total, term, at = np.ones(len(x)), np.ones(len(x)), x.copy()
    active = np.flatnonzero(np.where(upper, at < hi, at > lo))
    while len(active):
        y, up = at[active], upper[active]
        a, b, c = n1[active], k[active], n[active]
        ratio = np.where(up, (b - y) * (a - y) / ((y + 1) * (c - b - a + y + 1)),
                         y * (c - b - a + y) / ((b - y + 1) * (a - y + 1)))
        term[active] *= ratio
        total[active] += term[active]
        at[active] += np.where(up, 1.0, -1.0)
        y = at[active]
        ended = np.where(up, y >= hi[active], y <= lo[active])
        ended |= (ratio < 1) & (term[active] * ratio <= 1e-13 * total[active] * (1 - ratio))
        active = active[~ended]
    return np.minimum(0.0, _log_pmf(x, n1, k, n) + np.log(total))


def fisher_greater(a: np.ndarray, n1: np.ndarray, k: np.ndarray, n: np.ndarray, log: bool = False) -> np.ndarray:
    """One-sided Fisher exact p-value P(X >= a): ``a`` hits in ``n1`` lines at the port,
    ``k`` hits in ``n`` lines in all; ``a`` at or above its expectation ``n1 k / n``
    (``log``: as a natural log)."""
    log_p = _log_tail(a, n1, k, n, np.ones(len(a), bool))
    return log_p if log else np.exp(log_p)


def fisher_two_sided(a: np.ndarray, n1: np.ndarray, k: np.ndarray, n: np.ndarray, log: bool = False) -> np.ndarray:
    """Two-sided Fisher exact p-value: twice the one-sided tail on the side of ``a``
    (at most 1; ``log``: as a natural log). Conservative: P(p <= alpha) <= alpha, each
    tail being exact."""
    a, n1, k, n = (np.asarray(v, np.int64) for v in (a, n1, k, n))
    log_p = np.minimum(0.0, np.log(2) + _log_tail(a, n1, k, n, a * n >= n1 * k))
    return log_p if log else np.exp(log_p)


# ---------------------------------------------------------------- the table


def _hts_text(hts: int) -> str:
    return str(hts >> 4).zfill(hts & 15) if hts >= 0 else ""


def _origin_text(origin: int) -> str:
    return chr(65 + origin // 26) + chr(65 + origin % 26) if origin >= 0 else ""


def _table(rows: dict[str, np.ndarray], order: np.ndarray, names: dict[int, str]) -> pa.Table:
    """The rows in ``order`` as :data:`RESULT_SCHEMA`, each with its finding in words,
    built :data:`TABLE_CHUNK` rows at a time (a row's words are Python objects: a whole
    table of them at once costs a hundred megabytes at 5M lines)."""
    r = {name: values[order] for name, values in rows.items()}
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    ref = np.where(r["violation_row"] >= 0, position[np.maximum(r["violation_row"], 0)], -1)
    direction = np.sign(np.nan_to_num(r["port_value"] - r["other_value"]))
    strongest: dict[tuple, int] = {}  # per group and measure, its most significant row (rows come in that order)
    chunks = [_table_chunk(r, ref, direction, strongest, names, start, min(start + TABLE_CHUNK, len(order)))
              for start in range(0, len(order), TABLE_CHUNK)]
    return pa.concat_tables(chunks) if chunks else RESULT_SCHEMA.empty_table()


def _table_chunk(r: dict[str, np.ndarray], ref: np.ndarray, direction: np.ndarray, strongest: dict[tuple, int],
                 names: dict[int, str], start: int, stop: int) -> pa.Table:
    """Rows ``start:stop`` of :func:`_table` (``strongest`` carries on from the rows before)."""
    part = slice(start, stop)

    def values(name: str) -> list[Any]:
        return r[name][part].tolist()

    codes = values("center")
    center = [f"{c:03d}" for c in codes]
    hts = [_hts_text(h) for h in values("hts")]
    origin = [_origin_text(o) for o in values("origin")]
    port = [f"{p:04d}" for p in values("port")]
    measure = [MEASURES[m] for m in values("measure")]
    level = [LEVELS[v] for v in values("level")]
    subjects = [f"{names.get(c, 'Center ' + code)} goods" if lv == "center" else f"HTS {h} from {o}"
                for c, code, lv, h, o in zip(codes, center, level, hts, origin)]
    who = [f"{a:,} vs {b:,} importer{'s' if b != 1 else ''}" for a, b in zip(values("port_importers"),
                                                                            values("other_importers"))]
    q, mine_all, theirs_all, port_all = r["q"], r["port_value"], r["other_value"], r["port"]
    findings = []
    for i, (row, m, p, subject, mine, theirs, effect, n1, n2, number, j) in enumerate(zip(
            range(start, stop), measure, port, subjects, values("port_value"), values("other_value"),
            values("effect"), values("port_lines"), values("other_lines"), values("detail"), ref[part].tolist())):
        context = None
        if j >= 0:
            context = (f"violations found on {float(mine_all[j]):.1%} vs {float(theirs_all[j]):.1%} of "
                       f"inspected lines ({'not ' if q[j] >= 0.05 else ''}a significant difference)")
        text = _finding(m, p, subject, mine, theirs, effect, n1, n2, who[i], number, context)
        # A port that stands out makes "the other ports" of every other port lean its way: say so
        # on the rows it mirrors (the other way, less significant), not to blame them for it.
        top = strongest.setdefault((center[i], level[i], hts[i], origin[i], m), row)
        if top != row and m != "hts_mix" and q[top] < 0.05 and direction[row] * direction[top] < 0:
            text += f"; the other ports include port {int(port_all[top]):04d}, which differs the other way more " \
                    "(see its row)"
        findings.append(text)
    table = {"center": center, "level": level, "hts": hts, "origin": origin, "port": port, "measure": measure,
             **{k: r[k][part] for k in ("port_value", "other_value", "effect", "port_lines", "other_lines")},
             "p_value": r["p"][part], "q_value": r["q"][part], "finding": findings}
    return pa.table({name: pa.array(table[name], RESULT_SCHEMA.field(name).type) for name in RESULT_SCHEMA.names})


def _times(ratio: float) -> str:
    if ratio == float("inf"):
        return "where the other ports never do"
    return f"{ratio:.1f}x as often as the other ports" if ratio >= 0.1 else f"{ratio:.2f}x as often as the other ports"


def _finding(measure: str, port: str, subject: str, mine: float, theirs: float, effect: float, n1: int, n2: int,
             who: str, number: int, context: str | None) -> str:
    """One comparison in plain words (``who``: the importers on each side; ``number``: the
    HTS number a mix finding names)."""
    lines = f"{n1:,} vs {n2:,} lines; {who}"
    if measure == "inspection_rate":
        text = f"Port {port} inspects {subject} {_times(effect)} ({mine:.1%} vs {theirs:.1%} of {lines})"
        return text + (f"; {context}" if context else "")
    if measure == "violation_rate":
        return (f"Port {port} finds violations on {mine:.1%} of inspected lines of {subject} vs {theirs:.1%} at the "
                f"other ports ({n1:,} vs {n2:,} inspected lines; {who})")
    if measure == "revenue_per_inspected":
        return (f"Port {port} recovers ${mine:,.2f} per inspected line of {subject} vs ${theirs:,.2f} at the other "
                f"ports ({n1:,} vs {n2:,} inspected lines; {who})")
    if measure == "duty_rate":
        return (f"Port {port}: {subject} declared at an effective duty rate of {mine:.2f}% vs {theirs:.2f}% at the "
                f"other ports ({lines})")
    if measure == "preference_share":
        return (f"Port {port}: a preference claimed on {mine:.1%} of {subject} lines vs {theirs:.1%} at the other "
                f"ports ({lines})")
    if measure == "unit_value":
        return (f"Port {port}: {subject} declared at a unit value of ${mine:,.2f} vs ${theirs:,.2f} at the other ports "
                f"(geometric means; {lines})")
    return (f"Port {port} declares {subject} as HTS {_hts_text(number)} on {mine:.1%} of its lines vs {theirs:.1%} at "
            f"the other ports ({lines})")


# ---------------------------------------------------------------- the job


def uniformity(source: Any, *, min_lines: int = MIN_LINES, **options: Any) -> pa.Table:
    """The uniformity table (:data:`RESULT_SCHEMA`) of the lines of ``source`` (paths or
    Arrow data), read once; ``options`` as for :func:`read_uniformity`."""
    return read_uniformity(source, **options).result(min_lines)


def read_uniformity(source: Any, *, mapping: ColumnMapping | None = None, centers: CenterMap | None = None,
                    threads: int | None = None, rejects: str | os.PathLike[str] | None = None,
                    stats: IntakeStats | None = None, progress: Callable[[int], None] | None = None,
                    on_start: Callable[[int | None], None] | None = None, max_reject_share: float | None = None,
                    outputs: OutputSet | None = None, pseudonyms: Pseudonymiser | None = None) -> Uniformity:
    """The uniformity state of the lines of ``source``, read once on ``threads`` threads;
    options as for :func:`ceecore.fit` (``stats``, an :class:`~ceecore.IntakeStats`,
    gets the read's counts; rejected rows go to ``rejects``)."""
    from ceecore.pipeline import fold_lines  # (here: the pipeline holds a state of this module)

    state = Uniformity(centers or CenterMap.default())
    fold_lines(source, state.update, SCORING_COLUMNS, mapping=mapping, centers=state.centers, threads=threads,
               rejects=rejects, stats=stats, progress=progress, on_start=on_start,
               max_reject_share=max_reject_share, outputs=outputs, pseudonyms=pseudonyms)
    return state
