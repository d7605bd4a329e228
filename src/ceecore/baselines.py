"""Industry baselines: what is normal, nationally, for every product, origin and account.

:class:`Baselines` is mergeable state built in one streaming pass over history, like
the account book: a set of exact keyed tallies (:class:`~ceecore._kernels._tally.Tally`,
integer sums, minima and maxima), so that any batching, merge order or process count
gives the identical state, and its Arrow form is byte-for-byte the same.

What it holds:

- unit values per HTS10 x origin, HTS10, HTS6 and HTS4, as histograms of the log unit
  value in fixed bins of width :data:`BIN_WIDTH` (per unit of quantity, or per kg when
  a line has no quantity);
- value and duty per HTS10 x origin, with and without a preference claim (effective
  rates);
- lines per HTS6 x origin (the national origin mix), and per origin x preference
  program (how often goods from a country claim it);
- per account and product: lines and the sum of log unit values per origin (and per
  origin and port), first and last day per origin, the earliest origin; per account, manufacturer and heading: the
  highest duty rate declared, overall and per port, the HTS numbers used, and the lines of
  each number and of the heading, per port and overall;
- per account: lines per port, first and last day, lines, lines per calendar month.

:class:`Norms` turns the histograms into a robust centre (median) and spread
(interquartile range / 1.349) per group, for the scorer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from ceecore._checks import json_metadata
from ceecore._kernels._fit import FIT_TALLIES, fit_lines
from ceecore._kernels._tally import Tally
from ceecore.fields import LineFields

__all__ = ["BIN_WIDTH", "FIELD_KINDS", "LEVELS", "TALLIES", "Baselines", "Norms", "check_sums", "roll_up"]

# name -> the fold of each field; the fields of a key sit together (one probe reads all).
TALLIES: dict[str, tuple[str, ...]] = {
    "uv_hist": ("sum",),                   # packed (basis, hts10, origin, bin) -> lines; coarser levels
                                           #   are sums of these (:func:`roll_up`)
    "uv_moments": ("sum", "sum", "sum"),   # packed (basis, hts10, origin) -> lines, sum and sum of
                                           #   squares of round(log uv * 1e6) (leave-account-out norms)
    "ap_uv": ("sum", "sum", "sum"),        # (importer, hts10, origin, basis) -> the same moments
    "duty": ("sum", "sum"),                # packed (claimed, hts10, origin) -> value cents, duty cents
    "origin_lines": ("sum",),              # packed (hts6, origin) -> lines; (hts6, 1023) -> all its lines
    "claims": ("sum",),                    # (origin, program) -> lines; (origin, 0) -> all its lines
    "ap_days": ("min", "max", "sum"),      # (importer, hts10, origin) -> first day, last day, lines
    "ap_earliest": ("min",),               # (importer, hts10) -> first day * 1024 + origin
    "cls_group_max": ("max", "sum"),       # (importer x manufacturer, hts4) -> its dearest line's duty rate (bp,
                                           #   capped at 2^24 - 1) << 38 | that line's HTS number (hts10
                                           #   code): the max keeps the pair; lines
    "cls_port_max": ("max", "sum"),        # (importer x manufacturer, hts4, port) -> the same at the port
    "cls_hts": ("min", "sum"),             # (importer x manufacturer, hts10) -> its (.., hts4) group key, lines
    "acct_port": ("sum", "min"),           # (importer, port) -> lines, importer hash
    "acct": ("min", "max", "sum", "sum", "sum", "sum"),  # importer -> first day, last day, lines, and of
                                           #   its lines with a value: lines, sum and sum of squares of
                                           #   round(log dollars * 1e6)
    "acct_month": ("sum", "min"),          # (importer, calendar month) -> lines, importer hash
    "cls_hts_lines": ("sum",),             # (importer x manufacturer, hts10, port) -> lines
    "port_uv": ("sum", "sum", "min", "min"),  # (importer, hts10, origin, basis, port) -> lines, sum of
                                           #   round(log uv * 1e6), the importer, and its level-0 unit-value
                                           #   group | port << 50 (so the model can regroup them)
}
# What each field may hold, checked when a state is read: "count" >= 0 (lines, cents, a
# rate in basis points), "day" an entry day of the data contract, "any" any int64 (sums
# of logs, hashes, packed keys). Of a (first day, last day, ...) pair, first <= last.
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "uv_hist": ("count",), "uv_moments": ("count", "any", "count"), "ap_uv": ("count", "any", "count"),
    "duty": ("count", "count"), "origin_lines": ("count",), "claims": ("count",), "ap_days": ("day", "day", "count"),
    "ap_earliest": ("any",), "cls_group_max": ("count", "count"), "cls_port_max": ("count", "count"), "cls_hts": ("any", "count"),
    "acct_port": ("count", "any"), "acct": ("day", "day", "count", "count", "any", "count"), "acct_month": ("count", "any"),
    "cls_hts_lines": ("count",), "port_uv": ("count", "any", "any", "any"),
}
# The unit-value tallies hold level-0 groups (``uv_group``) only, coarser levels being
# rolled up from them: keys below these bits (histogram keys: the group, then the bin).
LEVEL0_BITS = {"uv_hist": 60, "uv_moments": 50}
FIRST_DAY, LAST_DAY = -25567, 84005   # entry days from 1900-01-01 to 2199-12-31 (as ``_kernels/_accounts.pyx``)
LEVELS = ("hts10_origin", "hts10", "hts6", "hts4")
BIN_WIDTH = 0.05                  # natural-log units: bins 5% apart
LOG_LOW = float(np.log(1e-4))     # unit values from $0.0001 ...
N_BINS = 1000                     # ... to about $5e17 (outliers fall in the end bins)
ANY_ORIGIN = 1023
MOMENT_LEVELS = 2                 # levels (HTS10 x origin, HTS10) that also keep sums, for leave-one-out norms
FORMAT = "ceecore.baselines/2"
# The rows of a saved state: a tally (named in a dictionary), a field, a key, its value.
TABLE_SCHEMA = pa.schema([("tally", pa.dictionary(pa.int8(), pa.string())), ("field", pa.int8()),
                          ("key", pa.uint64()), ("value", pa.int64())])


def uv_group(level: int, basis: np.ndarray, hts: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The unit-value group key at a level: (level, basis, hts code, origin) packed in 52
    bits (as ``_kernels/_keys.pxd`` packs it)."""
    return ((np.int64(level) << 50) | (basis.astype(np.int64) << 49) | (hts.astype(np.int64) << 10)
            | origin.astype(np.int64)).astype(np.uint64)


def coarser_group(level: int, group: np.ndarray) -> np.ndarray:
    """The group at ``level`` that holds each HTS10 x origin (level 0) group."""
    group = group.astype(np.uint64)
    if level == 0:
        return group
    basis = ((group >> np.uint64(49)) & np.uint64(1)).astype(np.int64)
    hts = ((group >> np.uint64(10)) & np.uint64((1 << 38) - 1)).astype(np.int64)
    if level > 1:  # the first 6 or 4 digits, as level_codes makes them
        digits = 6 if level == 2 else 4
        value, length = hts >> 4, hts & 15
        hts = value // 10 ** np.maximum(length - digits, 0) * 16 + digits
    return uv_group(level, basis, hts, np.full(len(group), ANY_ORIGIN))


def roll_up(keys: np.ndarray, values: np.ndarray, levels: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 unit-value tallies summed into every level below ``levels``.

    ``keys`` hold a level-0 group shifted left by ``shift`` bits (the low bits, a
    histogram bin say, are kept); returns the keys of all levels, sorted, with their
    summed values.
    """
    low = keys & np.uint64((1 << shift) - 1)
    out_keys, out_values = [], []
    for level in range(levels):
        rolled = coarser_group(level, keys >> np.uint64(shift)) << np.uint64(shift) | low
        order = np.argsort(rolled, kind="stable")
        unique, start = np.unique(rolled[order], return_index=True)
        out_keys.append(unique)
        out_values.append(np.add.reduceat(values[order], start, axis=0) if len(unique) else values[:0])
    return np.concatenate(out_keys), np.concatenate(out_values)


class Baselines:
    """Mergeable industry baselines (see the module docstring).

    ``tallies`` names the tallies to build (default: all of :data:`TALLIES`); scoring
    configs that turn indicators off need fewer. ``acct`` (every account's lines and
    dates) is always built.
    """

    def __init__(self, tallies: Iterable[str] | None = None) -> None:
        names = set(TALLIES) if tallies is None else {*tallies, "acct"}
        if names - set(TALLIES):
            raise ValueError(f"unknown baseline tallies: {sorted(names - set(TALLIES))}")
        self.tallies = {name: Tally(*folds) for name, folds in TALLIES.items() if name in names}

    def update(self, f: LineFields, threads: int = 1) -> None:
        """Folds the accepted lines of one batch into the tallies this state builds: one
        compiled pass, the tallies folded on ``threads`` threads (one state serves them
        all; the result does not depend on their number). One update at a time."""
        fit_lines(tuple(self.tallies.get(name) for name in FIT_TALLIES), f.importer, f.maker, f.day, f.country,
                  f.port, f.value_cents, f.duty_cents, f.rate_bp, f.hts10, f.hts6, f.hts4, f.spi, f.log_uv, f.basis,
                  LOG_LOW, BIN_WIDTH, N_BINS, threads)

    def merge(self, other: Baselines) -> None:
        """Adds another state's lines (exact: order does not matter). A key's sum saturates
        at the int64 limits, as fitting all the lines at once does; a tally whose sums over
        its keys would pass 64 bits is refused (a ValueError), and this state is then left
        part merged: merge into a fresh state (as ``merge_models`` does)."""
        if other.tallies.keys() != self.tallies.keys():
            raise ValueError(f"cannot merge baselines of tallies {sorted(other.tallies)} into baselines of "
                             f"{sorted(self.tallies)}")
        for name, tally in self.tallies.items():
            tally.merge(other.tallies[name])
            keys, fields = tally.items()
            check_sums(name, fields.reshape(len(keys), len(tally.folds)))

    @property
    def lines(self) -> int:
        return int(self.tallies["acct"].items()[1][:, 2].sum())

    def day_range(self) -> tuple[int, int] | None:
        """First and last entry day (days since 1970-01-01) seen, or None if empty."""
        days = self.tallies["acct"].items()[1]
        return (int(days[:, 0].min()), int(days[:, 1].max())) if len(days) else None

    def to_arrow(self) -> pa.Table:
        """The state as one table (tally, field, key, value), each tally's field sorted by key."""
        return pa.Table.from_batches(list(self.batches(list(self.tallies))), TABLE_SCHEMA) \
            .replace_schema_metadata(self.metadata())

    def batches(self, names: list[str]) -> Iterator[pa.RecordBatch]:
        """The rows of :meth:`to_arrow`, a batch per tally and field (so a writer can stream
        them), their tally named by its place in ``names`` (a dictionary shared with
        whatever else the same file holds)."""
        dictionary = pa.array(names, pa.string())
        for name, tally in self.tallies.items():
            k, v = tally.items()
            v = v.reshape(len(k), len(tally.folds))
            for f in range(v.shape[1]):
                yield pa.RecordBatch.from_arrays([
                    pa.DictionaryArray.from_arrays(np.full(len(k), names.index(name), np.int8), dictionary),
                    pa.array(np.full(len(k), f, np.int8)), pa.array(k, pa.uint64()),
                    pa.array(np.ascontiguousarray(v[:, f]), pa.int64())], schema=TABLE_SCHEMA)

    @staticmethod
    def metadata() -> dict[bytes, bytes]:
        return {b"ceecore.baselines": json.dumps({"format": FORMAT}).encode()}

    @classmethod
    def from_arrow(cls, table: pa.Table, others: tuple[str, ...] = ()) -> Baselines:
        """Rebuilds the state from :meth:`to_arrow` output (untrusted: its form, each
        tally's keys, distinct and sorted, and each field's values are checked, see
        :data:`FIELD_KINDS`); rows of the tallies named in ``others`` (kept in the same
        table by someone else) are skipped."""
        meta = json_metadata(table.schema.metadata, b"ceecore.baselines")
        found = meta.get("format") if isinstance(meta, dict) else meta
        if found != FORMAT:
            raise ValueError(f"not ceecore baselines of format {FORMAT} (found {str(found)[:40]!r})")
        if [(f.name, f.type) for f in table.schema] != [(f.name, f.type) for f in TABLE_SCHEMA] \
                or any(table.column(c).null_count for c in table.column_names):
            raise ValueError(f"baselines table must have the non-null columns {TABLE_SCHEMA.remove_metadata()}")
        tally = table.column("tally").combine_chunks()
        names = tally.dictionary.to_pylist()
        unknown = set(names) - set(TALLIES) - set(others)
        if unknown or len(set(names)) != len(names) or "acct" not in names:
            raise ValueError(f"unknown baseline tallies: {sorted(map(str, unknown))}" if unknown else
                             "baselines table must name each of its tallies (acct among them) once")
        index = tally.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        field = table.column("field").to_numpy().astype(np.int64)
        keys = table.column("key").to_numpy()
        values = table.column("value").to_numpy()
        if len(index) and not 0 <= index.min() <= index.max() < len(names):
            raise ValueError("baselines table names a tally outside its dictionary")
        # Each tally's fields are runs of rows, field after field, over the same keys.
        cut = np.flatnonzero((index[1:] != index[:-1]) | (field[1:] != field[:-1])) + 1
        starts, ends = np.r_[0, cut], np.r_[cut, len(index)]
        runs: dict[str, list[tuple[int, int, int]]] = {}
        for start, end in zip(starts, ends):
            if end > start:
                runs.setdefault(names[index[start]], []).append((int(field[start]), int(start), int(end)))
        state = cls([name for name in names if name in TALLIES])
        for name in state.tallies:
            parts = runs.get(name, [])
            width = len(TALLIES[name])
            if not parts:
                continue
            first = parts[0]
            if ([f for f, _, _ in parts] != list(range(width))
                    or any(e - s != first[2] - first[1] or not np.array_equal(keys[s:e], keys[first[1]:first[2]])
                           for _, s, e in parts)):
                raise ValueError(f"baseline tally {name!r}: its fields do not cover the same keys")
            own = keys[first[1]:first[2]]
            fields = np.stack([values[s:e] for _, s, e in parts], axis=1)
            check_tally(name, own, fields)
            state.tallies[name].add(np.ascontiguousarray(own), fields)
        return state


def check_tally(name: str, keys: np.ndarray, fields: np.ndarray) -> None:
    """Refuses what a fit never gives in the ``keys`` and (keys, fields) ``fields`` of
    tally ``name``: keys not distinct and sorted, unit-value keys of a coarser level or
    beyond the last bin (:data:`LEVEL0_BITS`), field values of the wrong kind
    (:data:`FIELD_KINDS`) or sums past 64 bits (:func:`check_sums`)."""
    if (keys[1:] <= keys[:-1]).any():
        raise ValueError(f"baseline tally {name!r}: its keys are not distinct and sorted")
    if name in LEVEL0_BITS and len(keys) and (int(keys[-1]) >> LEVEL0_BITS[name]
                                              or (name == "uv_hist" and ((keys & 1023) >= N_BINS).any())):
        raise ValueError(f"baseline tally {name!r}: a key of a coarser level or beyond the last bin")
    kinds = FIELD_KINDS[name]
    for f, kind in enumerate(kinds):
        column = fields[:, f]
        if kind == "count" and len(column) and column.min() < 0:
            raise ValueError(f"baseline tally {name!r}: field {f} holds a negative count")
        if kind == "day" and len(column) and not FIRST_DAY <= column.min() <= column.max() <= LAST_DAY:
            raise ValueError(f"baseline tally {name!r}: field {f} holds a day outside 1900-01-01..2199-12-31")
    if kinds[:2] == ("day", "day") and (fields[:, 0] > fields[:, 1]).any():
        raise ValueError(f"baseline tally {name!r}: a first day after its last day")
    check_sums(name, fields)


def check_sums(name: str, fields: np.ndarray) -> None:
    """Refuses a tally whose summed fields, added over all its keys, pass 64 bits: the
    norms roll keys up (and count lines) in int64 arithmetic, which must not wrap. The
    cents of the duty tally are only ever read key by key (and saturate when a fit's
    values pass 64 bits), so any of their sums is fine."""
    if name in _READ_KEY_BY_KEY:
        return
    for f, fold in enumerate(TALLIES[name]):
        column = fields[:, f]
        # Exact (Python integers) only where the quick float sum comes near the limit.
        if fold == "sum" and np.abs(column.astype(np.float64)).sum() >= 2.0**62 \
                and sum(abs(int(v)) for v in column) >= 2**63:
            raise ValueError(f"baseline tally {name!r}: field {f} sums past 64 bits over its keys")


_READ_KEY_BY_KEY = ("duty",)


SPREAD_SAMPLING = 1.36   # lines x the variance of log(interquartile range / 1.349) of normal lines
SPREAD_MIN_LINES = 30    # groups with this many lines show how far the spreads of a level differ


def shrunk_spreads(spread: np.ndarray, lines: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Each group's spread drawn towards the usual spread of its level as far as its
    own is uncertain (empirical Bayes, in log spreads): by the weight ``between /
    (between + SPREAD_SAMPLING / lines)``, where ``between`` is how far the level's
    spreads differ beyond their sampling error (robustly: from the median absolute
    deviation of the groups with ``SPREAD_MIN_LINES`` lines). A spread from 40 lines is
    off by a fifth as often as not, which makes a line's z as wrong; where groups truly
    differ little, the level's usual spread is the better estimate."""
    out = spread.astype(np.float64)
    log_spread = np.log(out)
    for lv in np.unique(level):
        on = level == lv
        big = on & (lines >= SPREAD_MIN_LINES)
        if big.sum() < 10:
            continue
        centre = np.median(log_spread[big])
        deviation = np.median(np.abs(log_spread[big] - centre)) / 0.6745
        between = max(deviation**2 - np.median(SPREAD_SAMPLING / lines[big]), 0.0)
        weight = between / (between + SPREAD_SAMPLING / np.maximum(lines[on], 1))
        out[on] = np.exp(centre + weight * (log_spread[on] - centre))
    return out


class Norms:
    """Robust centre (median) and spread (interquartile range / 1.349, drawn towards its
    level's usual spread as far as it is uncertain: :func:`shrunk_spreads`) of log unit
    values per group, at every level, from the HTS10 x origin histograms; ``index`` maps
    each group key to its row (the scoring kernel looks them up)."""

    def __init__(self, uv_hist: Tally) -> None:
        keys, counts = roll_up(*uv_hist.items(), levels=len(LEVELS), shift=10)
        group = keys >> np.uint64(10)
        bins = (keys & np.uint64(1023)).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(keys) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(keys)]
        cum = np.cumsum(counts)
        before = np.r_[0, cum][starts]
        n = cum[ends - 1] - before if len(keys) else np.zeros(0, np.int64)

        def quantile(q: float) -> np.ndarray:
            target = before + q * n
            at = np.minimum(np.searchsorted(cum, target, side="left"), ends - 1)
            below = np.r_[0, cum][at]
            frac = np.clip((target - below) / np.maximum(counts[at], 1), 0, 1)
            return LOG_LOW + BIN_WIDTH * (bins[at] + frac)

        self.groups = group[starts]
        self.lines = n
        self.median = quantile(0.5)
        self.spread = shrunk_spreads(np.maximum((quantile(0.75) - quantile(0.25)) / 1.349, BIN_WIDTH), n,
                                     (self.groups >> np.uint64(50)).astype(np.int64))
        self.index = Tally("min")
        self.index.add(self.groups, np.arange(len(self.groups), dtype=np.int64))
