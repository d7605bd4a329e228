"""Trends per Center: monthly series of each Center's activity, and the shifts that matter.

:class:`Trends` is exact, mergeable state folded from the one parse of each batch
(:class:`~ceecore.accounts.Intake`): keyed integer tallies per Center and month (lines,
cents of value and duty, outcome counts), per Center, month, HTS6 and origin (lines),
and the distinct entries and accounts of each Center and month (sets of 64-bit keys).
Any batching, merge order or thread count gives the identical state.

:meth:`Trends.result` reads two tables from it: the monthly series, and the shifts
found by a two-period (change-point) test on every series that can show one: an
origin's share of a product moving (trade diversion), a Center's or an account's share
of the national lines stepping up, a Center's effective duty rate falling. Shares and
rates are compared, not raw counts, so seasonality (which moves every Center and account
alike) cannot pass for a step. Each test takes the best split of the months, with the
variance estimated from the series itself (month-to-month scatter well beyond the
binomial is the rule in trade), the p-value Bonferroni-corrected over the splits tried,
and the false discovery rate is controlled over all tested series (Benjamini-Hochberg).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ceecore._checks import json_metadata
from ceecore._fdr import benjamini_hochberg
from ceecore._kernels._tally import Tally
from ceecore._kernels._views import fold_trends
from ceecore.accounts import Intake, _map_digest
from ceecore.centers import CenterMap
from ceecore.fields import OUTCOME_COLUMNS, line_fields
from ceecore.io import OutputSet, check_batch, output_set, write_table
from ceecore.privacy import Pseudonymiser, check_pseudonyms
from ceecore.schema import ColumnMapping
from ceecore.scoring import Model

if TYPE_CHECKING:
    from ceecore.pipeline import IntakeStats

__all__ = ["PIECE_TALLIES", "SERIES_SCHEMA", "SHIFTS_SCHEMA", "TALLIES", "WHOLE_TALLIES", "PieceRows", "TrendReport",
           "Trends", "TrendsView", "history_accounts", "read_pieces", "trends"]

SERIES_SCHEMA = pa.schema([("center", pa.string()), ("measure", pa.string()), ("key", pa.string()),
                           ("month", pa.date32()), ("value", pa.float64()), ("lines", pa.int64())])
SHIFTS_SCHEMA = pa.schema([("center", pa.string()), ("measure", pa.string()), ("key", pa.string()),
                           ("month", pa.date32()), ("before", pa.float64()), ("after", pa.float64()),
                           ("change", pa.float64()), ("p_value", pa.float64()), ("q_value", pa.float64()),
                           ("finding", pa.string())])
STATE_SCHEMA = pa.schema([("tally", pa.dictionary(pa.int8(), pa.string())), ("field", pa.int8()),
                          ("key", pa.uint64()), ("value", pa.int64()), ("text", pa.large_string())])
FORMAT = 2                        # (2: the span tally)

# name -> the fold of each field (see the module docstring).
TALLIES: dict[str, tuple[str, ...]] = {
    "month": ("sum",) * 7,        # (center, month) -> lines, value cents, duty cents, lines with a known
                                  #   inspection, inspected, inspected lines with a known finding, violations
    "origin": ("sum", "max", "max"),  # hash of (importer, center, month, hts6, origin) -> lines, packed
                                      #   (center, month, hts6, origin), importer
    "entry": ("max",),            # hash of (entry, center, month) -> (center, month)
    "account": ("sum", "max", "max"),  # hash of (importer, center, month) -> lines, (center, month), importer
    "span": ("min", "max"),       # importer -> its first and last month (with a Center)
}
# A state read in pieces (see read_pieces): the tallies of every line, and those of a piece's.
WHOLE_TALLIES, PIECE_TALLIES = ("month", "span"), ("origin", "entry", "account")
IDS = "ids"                       # rows of the state table holding each importer hash's id

# What the tests ask of a series before testing it, and what a shift must clear.
MIN_SIDE_MONTHS = 3               # months on each side of a split
MIN_ORIGIN_LINES = 100            # an HTS6 x origin pair's lines over the period (series and test)
MIN_PRODUCT_MONTH_LINES = 20      # a product's lines in a month for its shares that month to be tested
MIN_ACCOUNT_LINES = 120           # an account's lines over its tested months
ORIGIN_MARGIN = 0.05              # an origin's share must move by more than 5 points
VOLUME_MARGIN = 0.5               # an account's share of the lines must rise by more than 50% (a Center's: 20%)
CENTER_VOLUME_MARGIN = 0.2
DUTY_MARGIN = 0.1                 # a Center's effective duty rate must fall by more than 10%
ALPHA = 0.10                      # a flag: q < ALPHA

_MONTH_BITS, _CENTER_BITS = 12, 8
_MONTH0 = 840                     # months from 1900-01 to 1970-01: month index 0 is January 1900


def _month_date(month: np.ndarray) -> np.ndarray:
    return (np.asarray(month, np.int64) - _MONTH0).astype("datetime64[M]").astype("datetime64[D]")


def _country(code: np.ndarray) -> np.ndarray:
    return np.array([chr(65 + int(k) // 26) + chr(65 + int(k) % 26) for k in code], dtype=object)


def history_accounts(model: Model) -> np.ndarray:
    """The importer hashes a model's history saw (its accounts are not new in a later period)."""
    return model.baselines.tallies["acct"].items()[0]


class Trends:
    """Monthly activity per Center, exact and mergeable (see the module docstring).

    ``known`` (the importer hashes of a model's history, see :meth:`for_model`) makes an
    account new only if that history never saw it; without it, an account is new in its first
    month within the input. :meth:`update` may be called from several threads.
    """

    columns: tuple[str, ...] = OUTCOME_COLUMNS  # what the reading must carry beyond consolidation's

    def __init__(self, centers: CenterMap | None = None, known: np.ndarray | None = None) -> None:
        self.centers = centers if centers is not None else CenterMap.default()
        self.known = None if known is None else np.unique(np.asarray(known, np.uint64))
        self.tallies = {name: Tally(*folds) for name, folds in TALLIES.items()}
        self._ids: dict[int, str] = {}      # importer hash -> id (for the accounts a finding names)
        self._named = Tally("max")          # the same hashes, for a lookup per line in C
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, model: Model, centers: CenterMap | None = None) -> Trends:
        """A state whose new accounts are those the ``model``'s history never saw."""
        return cls(centers, history_accounts(model))

    # ------------------------------------------------------------ folding

    def update(self, intake: Intake, tallies: Collection[str] = tuple(TALLIES)) -> None:
        """Folds the accepted lines of one ingested batch in: into ``tallies`` only, for a
        state read in pieces (see :func:`read_pieces`)."""
        f = line_fields(intake)
        keep = np.flatnonzero(f.center >= 0)  # (chapters 98 and 99 belong to no Center)
        if len(keep) == 0:
            return
        outcomes = _outcomes(intake, f.rows[keep]) if "month" in tallies else []
        folded = [self.tallies[name] if name in tallies else None for name in TALLIES]
        with self._lock:
            fold_trends(*folded, keep, f.center, f.day, f.hts6, f.country, f.importer, intake.parsed["entry_hash"],
                        f.value_cents, f.duty_cents, outcomes)
            if "account" in tallies:  # (the ids of the accounts a finding may name)
                importer = f.importer[keep]
                unseen = np.flatnonzero(self._named.get(importer, 0) == 0)
                if len(unseen):
                    hashes, first = np.unique(importer[unseen], return_index=True)
                    ids = intake.canonical.column("importer_id").take(pa.array(f.rows[keep][unseen[first]]))
                    self._name(hashes, ids.to_pylist())

    def _name(self, hashes: np.ndarray, ids: list[str]) -> None:
        """Records the id of each importer hash (the same id always has the same hash)."""
        self._named.add(hashes, np.ones((len(hashes), 1), np.int64))
        self._ids.update(zip(hashes.tolist(), ids))

    def merge(self, other: Trends) -> None:
        """Adds another state's lines to this one (exact: order does not matter)."""
        if _map_digest(other.centers) != _map_digest(self.centers):
            raise ValueError("cannot merge trends built with different Centers or HTS -> Center maps")
        with self._lock:
            for name, tally in self.tallies.items():
                tally.merge(other.tallies[name])
            self._name(np.array(list(other._ids), np.uint64), list(other._ids.values()))

    # ------------------------------------------------------------ state

    def to_arrow(self) -> pa.Table:
        """The state as one table (tally, field, key, value, text), sorted: equal states give equal tables."""
        names = [*TALLIES, IDS]
        dictionary = pa.array(names, pa.string())
        batches = []

        def batch(name: str, field: int, keys: np.ndarray, values: np.ndarray, text: pa.Array) -> pa.RecordBatch:
            return pa.RecordBatch.from_arrays([
                pa.DictionaryArray.from_arrays(np.full(len(keys), names.index(name), np.int8), dictionary),
                pa.array(np.full(len(keys), field, np.int8)), pa.array(keys, pa.uint64()),
                pa.array(values, pa.int64()), text], schema=STATE_SCHEMA)

        with self._lock:
            for name, tally in self.tallies.items():
                keys, values = tally.items()
                values = values.reshape(len(keys), len(tally.folds))
                for f in range(values.shape[1]):
                    batches.append(batch(name, f, keys, np.ascontiguousarray(values[:, f]),
                                         pa.nulls(len(keys), pa.large_string())))
            hashes = np.array(sorted(self._ids), np.uint64)
            texts = pa.array([self._ids[int(h)] for h in hashes.tolist()], pa.large_string())
        batches.append(batch(IDS, 0, hashes, np.zeros(len(hashes), np.int64), texts))
        meta = {b"ceecore.trends": f'{{"format": {FORMAT}}}'.encode(),
                b"ceecore.centers": ",".join(self.centers.codes).encode(),
                b"ceecore.center_map": _map_digest(self.centers).encode()}
        return pa.Table.from_batches(batches, STATE_SCHEMA).replace_schema_metadata(meta)

    @classmethod
    def from_arrow(cls, table: pa.Table, centers: CenterMap | None = None, known: np.ndarray | None = None
                   ) -> Trends:
        """Rebuilds a state from :meth:`to_arrow` output (untrusted: its form, keys and values are checked)."""
        state = cls(centers, known)
        meta = table.schema.metadata or {}
        found = json_metadata(meta, b"ceecore.trends")
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise ValueError(f"not a ceecore trends state of format {FORMAT}")
        if meta.get(b"ceecore.center_map", b"").decode() != _map_digest(state.centers):
            raise ValueError("trends state was built with other Centers or another HTS -> Center map than this one's")
        if [(f.name, f.type) for f in table.schema] != [(f.name, f.type) for f in STATE_SCHEMA]:
            raise ValueError(f"trends state must have the columns {STATE_SCHEMA.remove_metadata()}")
        check_batch(table, "trends state")
        if any(table.column(c).null_count for c in ("tally", "field", "key", "value")):
            raise ValueError("trends state holds nulls")
        tally = table.column("tally").combine_chunks()
        names = np.array(tally.dictionary.to_pylist(), dtype=object)
        index = tally.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if len(index) and not 0 <= index.min() <= index.max() < len(names):
            raise ValueError("trends state names a tally outside its dictionary")
        which = names[index] if len(index) else np.zeros(0, object)
        field = table.column("field").to_numpy().astype(np.int64)
        keys = table.column("key").to_numpy()
        values = table.column("value").to_numpy()
        unknown = set(which.tolist()) - {*TALLIES, IDS}
        if unknown:
            raise ValueError(f"unknown trends tallies: {sorted(map(str, unknown))}")
        n_centers = len(state.centers.codes)
        for name, folds in TALLIES.items():
            rows = which == name
            parts = [np.flatnonzero(rows & (field == f)) for f in range(len(folds))]
            if np.count_nonzero(rows) != sum(len(p) for p in parts) \
                    or any(not np.array_equal(keys[p], keys[parts[0]]) for p in parts):
                raise ValueError(f"trends tally {name!r}: its fields do not cover the same keys")
            k = keys[parts[0]]
            if len(k) > 1 and np.any(k[1:] <= k[:-1]):
                raise ValueError(f"trends tally {name!r}: keys not distinct and sorted")
            v = np.column_stack([values[p] for p in parts]) if len(k) else np.zeros((0, len(folds)), np.int64)
            _check_values(name, k, v, n_centers)
            state.tallies[name].add(k, np.ascontiguousarray(v))
        _check_agree(state)
        rows = np.flatnonzero(which == IDS)
        text = table.column("text").take(pa.array(rows))
        if text.null_count or (len(rows) > 1 and np.any(keys[rows][1:] <= keys[rows][:-1])):
            raise ValueError("trends state: account ids missing, or their keys not distinct and sorted")
        state._name(keys[rows], text.to_pylist())
        return state

    # ------------------------------------------------------------ reading

    def result(self, alpha: float = ALPHA) -> tuple[pa.Table, pa.Table]:
        """``(series, shifts)``: the monthly series (:data:`SERIES_SCHEMA`, sorted by Center,
        measure, key, month) and the shifts flagged at ``q < alpha``
        (:data:`SHIFTS_SCHEMA`, most significant first)."""
        with self._lock:
            view = TrendsView.of(self, [self])
        return view.result(alpha)

    def write(self, series: str | os.PathLike[str], shifts: str | os.PathLike[str],
              into: OutputSet | None = None) -> None:
        """Writes :meth:`result` to the two paths (Parquet or Arrow IPC by name), as part
        of ``into`` (or as a set of their own)."""
        table, found = self.result()
        with output_set(into) as outputs:
            write_table(found, shifts, into=outputs)
            write_table(table, series, into=outputs)


def _outcomes(intake: Intake, rows: np.ndarray) -> list[np.ndarray]:
    """Per line: inspection known, inspected, finding known, violation (0/1), from the
    outcome columns where the input has them. Without an ``inspected`` column a line
    with a known finding counts as inspected (as in :func:`ceecore.history.outcomes`)."""
    batch = intake.canonical
    names = batch.schema.names
    take = pa.array(rows)
    n = len(rows)

    def flags(name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in names:
            return np.zeros(n, bool), np.zeros(n, bool)
        column = pc.cast(batch.column(name).take(take), pa.bool_())
        return (pc.is_valid(column).to_numpy(zero_copy_only=False),
                pc.fill_null(column, False).to_numpy(zero_copy_only=False))

    inspect_known, inspected = flags("inspected")
    finding_known, violation = flags("violation")
    if "inspected" in names:
        finding_known &= inspected
    else:
        inspect_known, inspected = np.full(n, finding_known.any()), finding_known.copy()
    return [a.astype(np.int64) for a in (inspect_known, inspected, finding_known, violation & finding_known)]


def _check_values(name: str, keys: np.ndarray, values: np.ndarray, n_centers: int) -> None:
    """Refuses a tally whose packed keys or fields could not have come from lines."""
    def bad_cm(cm: np.ndarray) -> bool:
        center, month = cm >> _MONTH_BITS, cm & ((1 << _MONTH_BITS) - 1)
        return bool(np.any((center < 1) | (center > n_centers) | (month >= 300 * 12)))

    if name == "month":
        ok = not bad_cm(keys.astype(np.int64)) and (values >= 0).all() and (values[:, 0] >= 1).all() \
            and (values[:, 4] <= values[:, 3]).all() and (values[:, 6] <= values[:, 5]).all()
    elif name == "origin":
        packed = values[:, 1]
        ok = not bad_cm(packed >> 30) and bool(np.all((packed & 1023) < 676)) \
            and bool(np.all((packed >> 10) & ((1 << 20) - 1) < 10**6)) and (values[:, 0] >= 1).all()
    elif name == "entry":
        ok = not bad_cm(values[:, 0])
    elif name == "span":
        ok = bool(np.all((values[:, 0] >= 0) & (values[:, 0] <= values[:, 1]) & (values[:, 1] < 300 * 12)))
    else:
        ok = not bad_cm(values[:, 1]) and (values[:, 0] >= 1).all()
    if not ok:
        raise ValueError(f"trends tally {name!r} holds keys or values no lines could give")


def _check_agree(state: Trends) -> None:
    """Refuses tallies that contradict each other: a (Center, month) with lines in one
    tally but none in the month tally, a span that is not its account's first and last
    month, origin lines of an account without one."""
    cms = state.tallies["month"].items()[0].astype(np.int64)
    for name, at in (("entry", lambda v: v), ("account", lambda v: v[:, 1]), ("origin", lambda v: v[:, 1] >> 30)):
        if not np.isin(at(state.tallies[name].items()[1]), cms).all():
            raise ValueError(f"trends tally {name!r} holds a Center and month with no lines in the month tally")
    importers, span = state.tallies["span"].items()
    account = state.tallies["account"].items()[1]
    who, month = account[:, 2].view(np.uint64), account[:, 1] & ((1 << _MONTH_BITS) - 1)
    at = np.minimum(np.searchsorted(importers, who), max(len(importers) - 1, 0))
    lo, hi = np.full(len(importers), 1 << 62), np.full(len(importers), -1)
    if len(who) and (len(importers) == 0 or np.any(importers[at] != who)):
        raise ValueError("trends tally 'account' holds an account without a span")
    np.minimum.at(lo, at, month)
    np.maximum.at(hi, at, month)
    if not (np.array_equal(lo, span[:, 0]) and np.array_equal(hi, span[:, 1])):
        raise ValueError("trends tally 'span' is not each account's first and last month")
    if not np.isin(state.tallies["origin"].items()[1][:, 2].view(np.uint64), importers).all():
        raise ValueError("trends tally 'origin' holds lines of an account without a span")


# ---------------------------------------------------------------------------- reading the state


def read_pieces(whole: Trends, pieces: Iterable[Trends], alpha: float = ALPHA) -> tuple[pa.Table, pa.Table]:
    """:meth:`Trends.result` of a state kept in pieces: ``whole`` holds the
    :data:`WHOLE_TALLIES` of every line (monthly totals, each account's first and last
    month); ``pieces`` the :data:`PIECE_TALLIES` of the lines of disjoint sets of
    Centers, each read and let go before the next is taken (a generator can fold each
    from its lines then), so that one piece is held at a time, not the whole state.
    The same tables as the whole state's (to read pieces on several threads, see
    :class:`TrendsView`)."""
    return TrendsView.of(whole, pieces).result(alpha)


class PieceRows(NamedTuple):
    """What a :class:`TrendsView` keeps of one piece (:meth:`TrendsView.rows`): its counts
    per (Center, month), its importers' ids, its accounts' and origins' rows."""

    entries: np.ndarray
    active: np.ndarray
    new: np.ndarray
    ids: dict[int, str]
    account: tuple[np.ndarray, ...]
    origin: tuple[np.ndarray, ...]


@dataclass
class TrendsView:
    """The state laid out for reading: dense (Center, month) grids, the accounts' lines
    per Center and month, and the origins' lines per (Center, month, HTS6, origin) of all
    accounts and of the steady ones (the importers summed out).

    A state kept in pieces is read by :meth:`start` with the whole tallies, then the
    :meth:`rows` of each piece (on any thread: the piece may be let go then) :meth:`add`-ed
    in any order, on one thread (add is not thread-safe); :meth:`result` then gives
    :func:`read_pieces`' tables."""

    centers: CenterMap
    months: np.ndarray              # month indices, first to last of the data, every month between
    month: np.ndarray               # (centers, months, 7) the month tally's fields
    entries: np.ndarray             # (centers, months) distinct entries
    active: np.ndarray              # (centers, months) distinct accounts
    new: np.ndarray                 # (centers, months) accounts new that month
    span: tuple[np.ndarray, ...]    # importer hashes (sorted), their first and last month positions
    account: tuple[np.ndarray, ...]  # importer, center, month position, lines: one per account tally key
    origin: tuple[np.ndarray, ...]  # center, month position, hts6, country, lines, steady accounts' or not
    ids: dict[int, str]
    known: np.ndarray | None
    _added: list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = field(default_factory=list)
    # (the added pieces' account and origin rows, joined when read)

    @classmethod
    def of(cls, whole: Trends, pieces: Iterable[Trends]) -> TrendsView:
        """The view of the :data:`WHOLE_TALLIES` of ``whole`` and the
        :data:`PIECE_TALLIES` of ``pieces`` (see :func:`read_pieces`; a whole state:
        ``of(state, [state])``)."""
        view = cls.start(whole)
        for piece in pieces:
            view.add(view.rows(piece))
            del piece  # (before the next piece is taken)
        return view

    @classmethod
    def start(cls, whole: Trends) -> TrendsView:
        """A view of the :data:`WHOLE_TALLIES` of ``whole``, no piece added yet."""
        n_centers = len(whole.centers.codes)
        keys, values = whole.tallies["month"].items()
        values = values.reshape(len(keys), 7)
        cm = keys.astype(np.int64)
        center, month = (cm >> _MONTH_BITS) - 1, cm & ((1 << _MONTH_BITS) - 1)
        months = np.arange(month.min(), month.max() + 1) if len(month) else np.zeros(0, np.int64)
        m, first = len(months), int(months[0]) if len(months) else 0
        grid = np.zeros((n_centers, m, 7), np.int64)
        grid[center, month - first] = values
        importers, span = whole.tallies["span"].items()
        grids = [np.zeros((n_centers, m), np.int64) for _ in range(3)]
        none = np.zeros(0, np.int64)
        return cls(whole.centers, months, grid, *grids, (importers, span[:, 0] - first, span[:, 1] - first),
                   (np.zeros(0, np.uint64),) + (none,) * 3, (none,) * 5 + (np.zeros(0, bool),), {}, whole.known)

    def add(self, rows: PieceRows) -> None:
        """Adds the :meth:`rows` of a piece (any order gives the same view)."""
        self.entries += rows.entries
        self.active += rows.active
        self.new += rows.new
        self.ids.update(rows.ids)
        self._added.append((rows.account, rows.origin))

    def _join(self) -> None:
        """The added pieces' accounts and origins joined to the view's."""
        if self._added:
            self.account = tuple(np.concatenate(parts) for parts in zip(self.account, *(a for a, _ in self._added)))
            self.origin = tuple(np.concatenate(parts) for parts in zip(self.origin, *(o for _, o in self._added)))
            self._added = []

    def _counted(self, cms: np.ndarray) -> np.ndarray:
        out = np.zeros(self.entries.shape, np.int64)
        if len(self.months):
            np.add.at(out, ((cms >> _MONTH_BITS) - 1, (cms & ((1 << _MONTH_BITS) - 1)) - self.months[0]), 1)
        return out

    def rows(self, piece: Trends) -> PieceRows:
        """What the view keeps of a piece (for :meth:`add`): its entries, accounts and new
        accounts counted per (Center, month), its accounts' and origins' rows (see the
        fields). Reads the view, never changes it: any thread."""
        first = int(self.months[0]) if len(self.months) else 0
        entries = self._counted(piece.tallies["entry"].items()[1].ravel())
        _, v = piece.tallies["account"].items()
        v = v.reshape(len(v), 3)
        a_cm, importer = v[:, 1], v[:, 2].view(np.uint64)
        a_center, a_month = (a_cm >> _MONTH_BITS) - 1, (a_cm & ((1 << _MONTH_BITS) - 1)) - first
        # An account is new in its first month within the input (unless the model knew
        # it); it is steady if active from the input's first month to its last (origin
        # shares of steady accounts compare like with like).
        importers, lo, hi = self.span
        at = np.searchsorted(importers, importer)
        is_new = a_month == lo[at]
        if self.known is not None:
            is_new &= ~np.isin(importer, self.known)
        ok, ov = piece.tallies["origin"].items()
        ov = ov.reshape(len(ok), 3)
        del ok
        o_cm = ov[:, 1] >> 30
        o_at = np.searchsorted(importers, ov[:, 2].view(np.uint64))
        steady = (lo[o_at] == 0) & (hi[o_at] == len(self.months) - 1)
        # One row per (Center, month, HTS6, origin, steady accounts' or not): 8 + 12 + 20 + 10 + 1 bits.
        row = ((o_cm >> _MONTH_BITS) - 1) << 43 | ((o_cm & ((1 << _MONTH_BITS) - 1)) - first) << 31 \
            | (ov[:, 1] & ((1 << 30) - 1)) << 1 | steady
        rows, inverse = np.unique(row, return_inverse=True)
        lines = np.zeros(len(rows), np.int64)
        np.add.at(lines, inverse.ravel(), ov[:, 0])
        origin = (rows >> 43, (rows >> 31) & 4095, (rows >> 11) & ((1 << 20) - 1), (rows >> 1) & 1023, lines,
                  (rows & 1).astype(bool))
        return PieceRows(entries, self._counted(a_cm), self._counted(a_cm[is_new]), dict(piece._ids),
                         (importer, a_center, a_month, v[:, 0]), origin)

    def result(self, alpha: float = ALPHA) -> tuple[pa.Table, pa.Table]:
        """The monthly series and the shifts (:data:`SERIES_SCHEMA`, :data:`SHIFTS_SCHEMA`)."""
        self._join()
        if len(self.months) == 0:  # (no lines with a Center)
            return SERIES_SCHEMA.empty_table(), SHIFTS_SCHEMA.empty_table()
        return self.series(), self.shifts(alpha)

    @property
    def codes(self) -> np.ndarray:
        return np.array(self.centers.codes, dtype=object)

    def dates(self, position: np.ndarray) -> pa.Array:
        return pa.array(_month_date(self.months[position]), pa.date32())

    def series(self) -> pa.Table:
        """The monthly series, one row per Center, measure, key and month (see :data:`SERIES_SCHEMA`)."""
        g = self.month
        lines, cents, duty = g[..., 0], g[..., 1], g[..., 2]
        seen = lines > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            measures = [
                ("lines", lines, lines, seen),
                ("entries", self.entries, lines, seen),
                ("entered_value", cents / 100, lines, seen),
                ("duty", duty / 100, lines, seen),
                ("duty_rate", 100 * duty / cents, lines, cents > 0),
                ("active_accounts", self.active, lines, seen),
                ("new_accounts", self.new, lines, seen),
                ("inspection_rate", g[..., 4] / g[..., 3], g[..., 3], g[..., 3] > 0),
                ("violation_rate", g[..., 6] / g[..., 5], g[..., 5], g[..., 5] > 0),
            ]
        parts = []
        for name, value, behind, keep in measures:
            c, j = np.nonzero(keep)
            parts.append(_rows(self.codes[c], name, np.full(len(c), ""), self.dates(j), value[c, j], behind[c, j]))
        pairs = self.origin_pairs()
        q, j = np.nonzero(pairs.product_lines > 0)
        parts.append(_rows(self.codes[pairs.center[q]], "origin_share", pairs.key[q], self.dates(j),
                           pairs.pair_lines[q, j] / pairs.product_lines[q, j], pairs.product_lines[q, j]))
        table = pa.concat_tables(parts)
        return table.sort_by([("center", "ascending"), ("measure", "ascending"), ("key", "ascending"),
                              ("month", "ascending")])

    def origin_pairs(self, steady: bool = False) -> _Pairs:
        """Each HTS6 x origin pair of a Center with at least MIN_ORIGIN_LINES lines: its
        lines and its product's lines per month (``steady``: of the accounts active from
        the first month to the last only)."""
        center, month, hts6, country, lines, of_steady = self.origin
        if steady:
            center, month, hts6, country, lines = (a[of_steady] for a in (center, month, hts6, country, lines))
        pair = (center.astype(np.int64) << 20 | hts6) << 10 | country
        pairs, inverse = np.unique(pair, return_inverse=True)  # (sorted: a product's pairs are adjacent)
        product = np.cumsum(np.r_[False, np.diff(pairs >> 10) != 0])
        m = len(self.months)
        product_lines = np.zeros((product[-1] + 1 if len(pairs) else 0, m), np.int64)
        np.add.at(product_lines, (product[inverse], month), lines)
        is_chosen = np.bincount(inverse, weights=lines, minlength=len(pairs)) >= MIN_ORIGIN_LINES
        chosen = pairs[is_chosen]
        mine = is_chosen[inverse]
        pair_lines = np.zeros((len(chosen), m), np.int64)
        np.add.at(pair_lines, ((np.cumsum(is_chosen) - 1)[inverse[mine]], month[mine]), lines[mine])
        hts = (chosen >> 10) & ((1 << 20) - 1)
        key = np.array([f"{h:06d} {c}" for h, c in zip(hts.tolist(), _country(chosen & 1023))], dtype=object)
        return _Pairs(chosen >> 30, hts, chosen & 1023, key, pair_lines, product_lines[product[is_chosen]])

    def shifts(self, alpha: float) -> pa.Table:
        """Every series tested for a step; the flagged ones (q < ``alpha``) as rows."""
        tests = [self._origin_tests(), self._center_tests(), self._account_tests(), self._duty_tests()]
        p = np.concatenate([t.p for t in tests])
        q = benjamini_hochberg(p)
        rows, at = [], 0
        for t in tests:
            t.q = q[at:at + len(t.p)]
            at += len(t.p)
            flagged = np.flatnonzero(t.q < alpha)
            with np.errstate(divide="ignore", invalid="ignore"):
                change = t.after[flagged] / t.before[flagged] - 1
            rows.append(_shift_rows(t, flagged, change, self))
        table = pa.concat_tables(rows)
        return table.sort_by([("q_value", "ascending"), ("p_value", "ascending"), ("center", "ascending"),
                              ("measure", "ascending"), ("key", "ascending")])

    def _national(self) -> np.ndarray:
        return self.month[..., 0].sum(axis=0)

    def _origin_tests(self) -> _Tested:
        pairs = self.origin_pairs(steady=True)
        valid = pairs.product_lines >= MIN_PRODUCT_MONTH_LINES
        y = np.divide(pairs.pair_lines, pairs.product_lines, out=np.zeros(pairs.pair_lines.shape),
                      where=pairs.product_lines > 0)
        step = _step_test(y, pairs.product_lines, valid, ORIGIN_MARGIN, relative=False, up=True, down=True,
                          share=True)
        names = _country_names()
        hts = [f"{h:06d}" for h in pairs.hts6.tolist()]
        country = _country(pairs.country)

        def finding(i: int, month: str) -> str:
            b, a = step.before[i], step.after[i]
            who = names.get(country[i], country[i])
            return (f"{_possessive(who)} share of HTS {hts[i]} {'rose' if a > b else 'fell'} from {b:.0%} to {a:.0%} "
                    f"from {month} ({self.centers.centers[pairs.center[i]].name})")

        return _Tested("origin_share", pairs.center, pairs.key, step, finding)

    def _center_tests(self) -> _Tested:
        lines = self.month[..., 0]
        national = np.broadcast_to(self._national(), lines.shape)
        y = np.divide(lines, national, out=np.zeros(lines.shape), where=national > 0)
        step = _step_test(y, national, national > 0, CENTER_VOLUME_MARGIN, relative=True, up=True, down=False,
                          share=True)
        center = np.arange(len(lines))

        def finding(i: int, month: str) -> str:
            return (f"{_possessive(self.centers.centers[i].name)} share of the national lines rose from "
                    f"{step.before[i]:.1%} to {step.after[i]:.1%} from {month}")

        return _Tested("lines", center, np.full(len(center), "", object), step, finding)

    def _duty_tests(self) -> _Tested:
        g = self.month
        cents, duty, lines = g[..., 1], g[..., 2], g[..., 0]
        y = np.divide(100.0 * duty, cents, out=np.zeros(cents.shape), where=cents > 0)
        step = _step_test(y, lines, (cents > 0) & (lines >= MIN_PRODUCT_MONTH_LINES), DUTY_MARGIN,
                          relative=True, up=False, down=True, share=False)
        center = np.arange(len(lines))

        def finding(i: int, month: str) -> str:
            return (f"{_possessive(self.centers.centers[i].name)} effective duty rate fell from {step.before[i]:.2f}% to "
                    f"{step.after[i]:.2f}% from {month}")

        return _Tested("duty_rate", center, np.full(len(center), "", object), step, finding)

    def _account_tests(self) -> _Tested:
        """Each account's share of the national lines, over the months between its first
        and last (both left out where they fall inside the data: partial months)."""
        importer, center, month, lines = self.account
        m = len(self.months)
        accounts, inverse = np.unique(importer, return_inverse=True)
        busy = np.bincount(inverse, weights=lines, minlength=len(accounts)) >= MIN_ACCOUNT_LINES
        keep = busy[inverse]
        accounts, inverse = np.unique(importer[keep], return_inverse=True)
        grid = np.zeros((len(accounts), m), np.int64)
        np.add.at(grid, (inverse, month[keep]), lines[keep])
        by_center = np.zeros((len(accounts), len(self.codes)), np.int64)
        np.add.at(by_center, (inverse, center[keep]), lines[keep])
        home = by_center.argmax(axis=1) if len(accounts) else np.zeros(0, np.int64)
        active = grid > 0
        first = np.where(active.any(axis=1), active.argmax(axis=1), 0)
        last = m - 1 - np.where(active.any(axis=1), active[:, ::-1].argmax(axis=1), 0)
        position = np.arange(m)
        window = (position >= np.where(first > 0, first + 1, first)[:, None]) \
            & (position <= np.where(last < m - 1, last - 1, last)[:, None])
        national = np.broadcast_to(self._national(), grid.shape)
        window &= national > 0
        window &= (np.where(window, grid, 0).sum(axis=1) >= MIN_ACCOUNT_LINES)[:, None]
        y = np.divide(grid, national, out=np.zeros(grid.shape), where=national > 0)
        step = _step_test(y, national, window, VOLUME_MARGIN, relative=True, up=True, down=False, share=True)
        ids = np.array([self.ids.get(h, f"{h:016x}") for h in accounts.tolist()], dtype=object)
        nat = self._national()

        def finding(i: int, month: str) -> str:
            b, a = step.before[i], step.after[i]
            per_month = np.mean(nat[window[i]]) if window[i].any() else 0.0
            return (f"{_possessive('account ' + ids[i])} lines stepped up from {b:.2%} to {a:.2%} of the national lines "
                    f"(about {b * per_month:,.0f} to {a * per_month:,.0f} a month) from {month} "
                    f"({self.centers.centers[home[i]].name})")

        return _Tested("lines", home, ids, step, finding)


@dataclass
class _Pairs:
    center: np.ndarray
    hts6: np.ndarray
    country: np.ndarray
    key: np.ndarray
    pair_lines: np.ndarray      # (pairs, months)
    product_lines: np.ndarray   # (pairs, months): the lines of the pair's HTS6 in its Center


@dataclass
class _Step:
    """A two-period test per series: the first month after the split (a position; -1:
    not tested), the weighted means before and after, the p-value."""

    split: np.ndarray
    before: np.ndarray
    after: np.ndarray
    p: np.ndarray


@dataclass
class _Tested:
    measure: str
    center: np.ndarray
    key: np.ndarray
    step: _Step
    finding: Callable[[int, str], str]
    q: np.ndarray | None = None

    @property
    def p(self) -> np.ndarray:
        return self.step.p

    @property
    def before(self) -> np.ndarray:
        return self.step.before

    @property
    def after(self) -> np.ndarray:
        return self.step.after


def _step_test(y: np.ndarray, w: np.ndarray, valid: np.ndarray, margin: float, *, relative: bool, up: bool,
               down: bool, share: bool) -> _Step:
    """For each row of ``y`` (series x months; weights ``w``, months in ``valid``), the
    best split of its months into two periods and the one-sided p-value that the mean
    moved by more than ``margin`` (relative: a share of the mean before; else absolute),
    up and/or down.

    The model is a weighted mean per period with variance sigma^2 / weight per month,
    sigma^2 estimated from the residuals (for shares, at least the binomial p(1 - p)),
    so the contrast over its standard error has Student's t distribution with n - 2
    degrees of freedom. The smallest p-value over the splits (at least MIN_SIDE_MONTHS
    months each side) and directions is multiplied by their number (Bonferroni).
    """
    from scipy.special import stdtr  # Student's t distribution function (imported here: 0.2 s, only when testing)

    n, m = y.shape
    w = np.where(valid, w, 0).astype(np.float64)
    wy, wyy = w * y, w * y * y
    cw, cs, cq, cn = (np.cumsum(a, axis=1) for a in (w, wy, wyy, valid.astype(np.int64)))
    total_n = cn[:, -1:] if m else np.zeros((n, 1), np.int64)
    best_t = np.full(n, -np.inf)
    best = np.full(n, -1)
    before, after = np.full(n, np.nan), np.full(n, np.nan)
    tried = np.zeros(n, np.int64)
    pooled = cs[:, -1] / np.where(cw[:, -1] > 0, cw[:, -1], 1) if m else np.zeros(n)
    floor = pooled * (1 - pooled) if share else np.zeros(n)
    directions = [d for d, on in ((1, up), (-1, down)) if on]
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in range(1, m):
            nb, na = cn[:, s - 1], total_n[:, 0] - cn[:, s - 1]
            ok = valid[:, s] & (nb >= MIN_SIDE_MONTHS) & (na >= MIN_SIDE_MONTHS)
            if not ok.any():
                continue
            wb, sb, qb = cw[:, s - 1], cs[:, s - 1], cq[:, s - 1]
            wa, sa, qa = cw[:, -1] - wb, cs[:, -1] - sb, cq[:, -1] - qb
            b, a = sb / wb, sa / wa
            rss = np.maximum(qb - sb * sb / wb, 0) + np.maximum(qa - sa * sa / wa, 0)
            sigma2 = np.maximum(rss / (total_n[:, 0] - 2), floor)
            for d in directions:
                lam = (1 + d * margin) if relative else 1.0
                shift = 0.0 if relative else margin
                contrast = (a - lam * b if d == 1 else lam * b - a) - shift
                t = contrast / np.sqrt(sigma2 * (1 / wa + lam * lam / wb))
                t = np.where(ok & np.isfinite(t), t, -np.inf)
                better = t > best_t
                best_t = np.where(better, t, best_t)
                best = np.where(better, s, best)
                before, after = np.where(better, b, before), np.where(better, a, after)
            tried += ok * len(directions)
    df = np.maximum(total_n[:, 0] - 2, 1)
    p = np.where(best >= 0, np.minimum(1.0, tried * stdtr(df, -best_t)), np.nan)
    return _Step(best, before, after, p)


def _rows(center: np.ndarray, measure: str, key: np.ndarray, month: pa.Array, value: np.ndarray,
          lines: np.ndarray) -> pa.Table:
    return pa.table([pa.array(center, pa.string()), pa.array(np.full(len(center), measure, object), pa.string()),
                     pa.array(key, pa.string()), month, pa.array(np.asarray(value, np.float64)),
                     pa.array(np.asarray(lines, np.int64))], schema=SERIES_SCHEMA)


def _shift_rows(t: _Tested, flagged: np.ndarray, change: np.ndarray, view: TrendsView) -> pa.Table:
    months = view.months[t.step.split[flagged]] if len(flagged) else np.zeros(0, np.int64)
    dates = _month_date(months)
    words = [t.finding(int(i), dt.date.fromisoformat(str(d)).strftime("%B %Y")) for i, d in zip(flagged, dates)]
    return pa.table([
        pa.array(view.codes[t.center[flagged]], pa.string()),
        pa.array(np.full(len(flagged), t.measure, object), pa.string()),
        pa.array(t.key[flagged], pa.string()), pa.array(dates, pa.date32()),
        pa.array(t.before[flagged]), pa.array(t.after[flagged]), pa.array(np.asarray(change, np.float64)),
        pa.array(t.p[flagged]), pa.array(t.q[flagged]), pa.array(words, pa.string())], schema=SHIFTS_SCHEMA)


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _country_names() -> dict[str, str]:
    """Country names for findings (the generator's origin table; others show their code)."""
    from ceecore.synth import _read_table
    return {row["country"]: row["name"] for row in _read_table("origins.csv")}


# ---------------------------------------------------------------------------- the job


@dataclass
class TrendReport:
    """What :func:`trends` produced: the series, the flagged shifts, the state and the read's counts."""

    series: pa.Table
    shifts: pa.Table
    state: Trends
    stats: IntakeStats


def trends(
    source: Any,
    *,
    mapping: ColumnMapping | None = None,
    centers: CenterMap | None = None,
    model: Model | str | os.PathLike[str] | None = None,
    threads: int | None = None,
    rejects: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    max_reject_share: float | None = None,
    outputs: OutputSet | None = None,
    pseudonyms: Pseudonymiser | None = None,
    alpha: float = ALPHA,
) -> TrendReport:
    """Monthly series per Center of the lines in ``source`` and the shifts flagged in them
    (see the module docstring), reading and parsing the input once.

    ``model`` (a :class:`~ceecore.scoring.Model` or its path): accounts its history saw
    are not new. Rejected rows go to ``rejects`` (with ``outputs``, as part of that set);
    past ``max_reject_share`` of the rows rejected,
    :class:`~ceecore.pipeline.TooManyRejects` is raised.
    """
    from ceecore.pipeline import fold_lines  # (here: the pipeline holds a state of this module)

    centers = centers or CenterMap.default()
    model_file = [model] if isinstance(model, (str, os.PathLike)) else []
    if model is not None and not isinstance(model, Model):
        model = Model.load(model)
    if model is not None:  # (its accounts are keyed by ids in clear or under one key: the same here)
        check_pseudonyms(model.meta, pseudonyms)
    state = Trends.for_model(model, centers) if model is not None else Trends(centers)
    stats = fold_lines(source, state.update, Trends.columns, mapping=mapping, centers=centers, threads=threads,
                       rejects=rejects, progress=progress, on_start=on_start, max_reject_share=max_reject_share,
                       outputs=outputs, pseudonyms=pseudonyms, inputs=model_file)
    series, shifts = state.result(alpha)
    return TrendReport(series, shifts, state, stats)
