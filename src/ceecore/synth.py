"""Synthetic national entry lines with labelled risk schemes (``ceecore generate``).

Real entry data is confidential, so tests, benchmarks, the demo and anyone evaluating
ceecore run on lines from this generator. It first builds a *world*:

- products: 10-digit HTS numbers under the headings of the Center map, each with a
  duty rate (many free, some high; a Section 301 surcharge on Chinese goods for some),
  a unit of quantity, a weight per unit, a unit-value norm and a national origin mix;
- importer accounts: heavy-tailed sizes, IRS or CBP-assigned importer numbers, a home
  industry (one Center) with a minority of lines elsewhere, a catalogue of products
  with one to three origins each and a manufacturer (MID) per account and origin, a
  few ports, one or two brokers (filer codes) and an activity window;
- the injected risk schemes (:data:`SCHEMES`), each on its own accounts or catalogue
  items, sized so that its expected share of lines is the configured rate. With
  ``SynthConfig(variants=True)`` every scheme takes its *variant* shapes instead
  (partial, shallow, spread thin: see :meth:`Synthesizer._schemes`), still labelled
  with its family's name, so detection fitted on the default shapes can be measured
  on shapes it was not tuned on.

Then it files entries day by day with seasonality. Every random draw of a day comes
from a generator seeded by ``(seed, day, part)`` and each day is cut into parts of at
most :data:`BLOCK_LINES` lines, so the same seed and parameters give identical lines
whatever the output batch size. Everything is vectorised numpy.

Each line carries the canonical columns (:data:`ceecore.schema.CANONICAL`), including
the observed outcomes (``inspected``; ``violation`` and ``revenue_recovered``, null
when the line was not inspected), and two ground-truth columns a real file would not
have: ``scheme`` (null for a clean line) and ``duty_lost`` (0 for a clean line).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from ceecore._threads import in_order, resolve_threads
from ceecore.centers import CenterMap
from ceecore.io import OutputSet, ParquetSink, _kind, atomic_path, output_set
from ceecore.schema import CANONICAL, arrow_schema

__all__ = [
    "BLOCK_LINES",
    "DEFAULT_SCHEME_RATES",
    "DIRTY_REASONS",
    "SCHEMES",
    "SynthConfig",
    "Trend",
    "Synthesizer",
    "Written",
    "detection_measures",
    "generate",
    "generate_table",
    "scheme_recall",
    "write",
]

SCHEMES: tuple[str, ...] = (
    "undervaluation",     # unit value a fraction of the norm for the product
    "transshipment",      # origin of a product switches to a third country after a date
    "misclassification",  # a lower-duty HTS number of the same heading, at some ports only
    "preference_misuse",  # a preference (SPI) claimed from an ineligible origin
    "port_shopping",      # one account spreads its goods over many ports
    "new_importer",       # a recent importer number with an abrupt large volume
)
DEFAULT_SCHEME_RATES: Mapping[str, float] = {
    "undervaluation": 0.010,
    "transshipment": 0.005,
    "misclassification": 0.005,
    "preference_misuse": 0.003,
    "port_shopping": 0.003,
    "new_importer": 0.002,
}
# Contract-breaking rows added by ``dirty``, in turn; each breaks one field of a copy of
# a good line, so the data contract rejects it for exactly this reason.
DIRTY_REASONS: tuple[str, ...] = (
    "missing_entry_number", "bad_line_number", "missing_importer_id", "bad_importer_id",
    "bad_port_code", "missing_entry_date", "bad_entry_date", "bad_hts_code",
    "bad_country_of_origin", "missing_entered_value", "bad_entered_value", "bad_duty_paid",
    "bad_duty_rate", "bad_quantity", "bad_gross_weight_kg", "bad_manufacturer_id",
)
BLOCK_LINES = 1 << 16  # a day's lines are generated in parts of at most this many
DISPARITY_INSPECTION = 5.0  # SynthConfig.disparities: the port inspects one Center's goods this many times as often

_UNDERVALUATION, _TRANSSHIPMENT, _MISCLASSIFICATION, _PREFERENCE, _PORT_SHOPPING, _NEW_IMPORTER = range(1, 7)

# Home industries by share of accounts (codes of the default Center map; other codes get 10).
_CENTER_WEIGHT = {"001": 9, "002": 10, "003": 8, "004": 12, "005": 7,
                  "006": 3, "007": 14, "008": 16, "009": 10, "010": 11}
_UNITS = ("NO", "KG", "DOZ", "PRS", "M2", "L", "X")  # X: no quantity is reported
_NO, _KG, _DOZ, _PRS, _M2, _L, _X = range(7)
_COUNTED = np.array([True, False, True, True, False, False, False])  # whole quantities
_UNIT_TEXT = pa.array(_UNITS)
_ENTRY_TYPE_TEXT = pa.array(["01", "03", "11"])  # consumption, AD/CVD, informal
_SCHEME_TEXT = pa.array(SCHEMES)
# Text columns drawn from a small vocabulary. Parts make them as dictionary arrays (codes
# into the world's vocabulary): a Parquet file takes them so without hashing a string.
CODED = ("port_code", "country_of_origin", "quantity_unit", "filer_code", "entry_type", "spi", "country_of_export",
         "scheme")
# Per unit: log unit value (USD) mean and spread across products; log kg per unit.
_UNIT_LOG_VALUE = np.array([[3.7, 1.4], [1.8, 1.1], [4.1, 0.8], [2.7, 0.7], [2.1, 0.8], [1.4, 1.0], [2.3, 1.0]])
_UNIT_LOG_KG = np.array([[0.4, 1.5], [0.0, 0.0], [0.7, 0.4], [0.0, 0.3], [-1.2, 0.5], [0.0, 0.1], [-1.0, 1.0]])
_RATES = np.array([0.8, 1.5, 2.5, 2.9, 3.4, 3.7, 4.2, 4.9, 5.3, 6.0, 6.5, 7.5, 8.0, 10.0, 12.0])
_TEXTILE_RATES = np.array([7.0, 10.8, 12.0, 14.9, 16.0, 19.7, 24.0, 28.2, 32.0, 37.5])
_SECTION_301 = (np.array([0.0, 7.5, 25.0]), np.array([0.35, 0.25, 0.40]))  # extra % on Chinese goods
_CLAIM_SHARE = 0.85      # items from an eligible origin that claim the preference
_PORT_SKEW = 2.5         # an account's first port takes most entries
_ITEM_SKEW = 3.0         # an account's first products take most lines
_EIN_PREFIXES = np.array([*range(1, 7), *range(10, 17), *range(20, 28), *range(30, 49),
                          *range(50, 69), *range(71, 78), *range(80, 89), *range(90, 96), 98, 99])
_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.1])  # Monday..Sunday
# Variant shapes (SynthConfig.variants).
_NEW_IMPORTER_LINES = 20     # expected lines of a variant new importer: few, but bulky
_NEW_IMPORTER_BULK = (8.0, 40.0)  # its lines carry this many times a usual line's value
_SHALLOW_LINES = 30          # shallow undervaluation goes on items with at least this many lines


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Every field has a sensible default; rates are shares of lines.

    ``scheme_rates`` gives the expected share of lines of each scheme (missing schemes
    take their default; 0 turns one off). ``inspect_share`` of lines are inspected, and
    a risky-looking line (a violation, a preference claim, a duty rate of 15% or more,
    an account new in the period) is ``targeting`` times as likely to be inspected as
    another. ``unit_value_sigma`` is the spread of log unit values per HTS x origin;
    ``away_share`` the mean share of an account's lines outside its home industry.
    ``dirty`` contract-breaking rows (:data:`DIRTY_REASONS`) are added to ``lines``.
    ``variants`` plants every scheme in its variant shapes (labels unchanged); its
    draws come from streams of their own, so with it off the lines are as before.
    ``trend`` injects a trade diversion (:class:`Trend`), from a stream of its own too.
    ``disparities`` plants two port disparities (:meth:`Synthesizer.disparities`): one
    port inspects one Center's goods ``DISPARITY_INSPECTION`` times as often as the
    others (violations unchanged), one port takes a dutiable product in at no duty
    (no scheme label: the port, not the importer, treats it differently); drawn from a
    stream of their own too.
    """

    lines: int = 1_000_000
    accounts: int | None = None  # default: one per 50 lines
    start: dt.date = dt.date(2025, 1, 1)
    end: dt.date = dt.date(2025, 12, 31)
    seed: int = 0
    scheme_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SCHEME_RATES))
    inspect_share: float = 0.05
    targeting: float = 4.0
    unit_value_sigma: float = 0.35
    away_share: float = 0.12
    products: int | None = None  # default: one per 200 lines, 200 to 18,000 (HTSUS has ~19,000)
    seasonality: float = 0.25
    dirty: int = 0
    variants: bool = False
    trend: bool = False
    disparities: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.scheme_rates) - set(SCHEMES)
        if unknown:
            raise ValueError(f"unknown scheme {', '.join(sorted(unknown))}; known: {', '.join(SCHEMES)}")
        object.__setattr__(self, "scheme_rates", {**DEFAULT_SCHEME_RATES, **self.scheme_rates})
        if self.accounts is None:
            object.__setattr__(self, "accounts", max(20, self.lines // 50))
        if self.products is None:
            object.__setattr__(self, "products", min(18_000, max(200, self.lines // 200)))
        checks = [
            (self.lines >= 0, "lines must be >= 0"),
            (self.accounts is not None and self.accounts >= 1, "accounts must be >= 1"),
            (self.end >= self.start, "end must not be before start"),
            (0 <= self.seed < 2**63, "seed must be in [0, 2**63)"),
            (all(0 <= r <= 0.2 for r in self.scheme_rates.values()), "each scheme rate must be in [0, 0.2]"),
            (sum(self.scheme_rates.values()) <= 0.5, "scheme rates must add up to at most 0.5"),
            (0 <= self.inspect_share <= 1, "inspect_share must be in [0, 1]"),
            (self.targeting >= 1, "targeting must be >= 1"),
            (0 < self.unit_value_sigma <= 3, "unit_value_sigma must be in (0, 3]"),
            (0 <= self.away_share < 0.5, "away_share must be in [0, 0.5)"),
            (self.products is not None and self.products >= 50, "products must be >= 50"),
            (0 <= self.seasonality < 1, "seasonality must be in [0, 1)"),
            (self.dirty >= 0, "dirty must be >= 0"),
            (self.lines > 0 or self.dirty == 0, "dirty rows are copies of good lines: they need lines > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


# ---------------------------------------------------------------- small vectorised helpers


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread deterministic hash of uint64 values."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


_FOUR_DIGITS = (np.arange(10000)[:, None] // np.array([1000, 100, 10, 1]) % 10 + 48).astype(np.uint8)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative ints, as an (n, width) uint8 matrix."""
    v = np.asarray(values, np.int64)
    groups = [np.take(_FOUR_DIGITS, v % 10000, axis=0)]
    for _ in range((width - 1) // 4):
        v = v // 10000
        groups.insert(0, np.take(_FOUR_DIGITS, v % 10000, axis=0))
    return np.concatenate(groups, axis=1)[:, -width:]


def _letters(hashes: np.ndarray, width: int) -> np.ndarray:
    """Upper-case letters from the low bytes of uint64 hashes, as an (n, width) uint8 matrix."""
    return np.ascontiguousarray(hashes, "<u8").view(np.uint8).reshape(-1, 8)[:, :width] % 26 + 65


def _fixed_text(values: np.ndarray) -> pa.StringArray:
    """A string array from fixed-width byte strings (an ``S<w>`` array or an (n, w) uint8 matrix)."""
    data = np.ascontiguousarray(values)
    n = len(data)
    width = data.dtype.itemsize if data.ndim == 1 else data.shape[1]
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _fixed(matrix: np.ndarray) -> np.ndarray:
    """An (n, w) uint8 matrix as a 1-d array of ``S<w>`` strings (gathers fast)."""
    return np.ascontiguousarray(matrix).view(f"S{matrix.shape[1]}").ravel()


def _packed_text(matrix: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """A string array of the first ``lengths[i]`` bytes of each matrix row."""
    keep = np.arange(matrix.shape[1]) < lengths[:, None]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(matrix[keep]))


def _permute(index: np.ndarray, modulus: int, salt: int) -> np.ndarray:
    """Distinct values in [0, modulus) for distinct indexes below it (an affine bijection)."""
    a = 2_654_435_761  # a prime dividing none of the moduli used here, hence coprime to them
    offset = int(_mix(np.array([salt ^ 0x9E3779B97F4A7C15], np.uint64))[0]) % modulus
    return (np.asarray(index, np.int64) % modulus * a + offset) % modulus


def _segment_cdf(segment: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cumulative weights within sorted segments, offset by the segment number.

    Drawing ``searchsorted(cdf, s + u, "right")`` for ``u`` in [0, 1) then picks an
    element of segment ``s`` with probability proportional to its weight.
    """
    cum = np.cumsum(weights, dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    ends = np.r_[starts[1:], len(segment)] - 1
    base = np.repeat(np.r_[0.0, cum[ends[:-1]]], np.diff(np.r_[starts, len(segment)]))
    total = np.repeat(cum[ends] - np.r_[0.0, cum[ends[:-1]]], np.diff(np.r_[starts, len(segment)]))
    within = (cum - base) / total
    within[ends] = 1.0
    return segment + within


def _skewed_slot(u: np.ndarray, count: np.ndarray, skew: float | np.ndarray) -> np.ndarray:
    """Slot in [0, count) with slot 0 most likely: P(slot <= k) = ((k + 1) / count) ** (1 / skew)."""
    return np.minimum((count * u**skew).astype(np.int64), count - 1)


def _slot_share(slot: np.ndarray, count: np.ndarray, skew: float | np.ndarray) -> np.ndarray:
    """The probability :func:`_skewed_slot` gives ``slot``."""
    return ((slot + 1) / count) ** (1 / skew) - (slot / count) ** (1 / skew)


def _sample_distinct(rng: np.random.Generator, weights: np.ndarray, count: np.ndarray) -> np.ndarray:
    """For each row i, ``count[i]`` distinct indexes of ``weights`` drawn by weight, in draw order.

    An exponential race (the smallest ``Exp(1) / weight`` win) samples without
    replacement. Returns the picks of all rows, concatenated.
    """
    out = np.empty(int(count.sum()), np.int64)
    starts = np.r_[0, np.cumsum(count)[:-1]]
    one = np.flatnonzero(count == 1)
    cdf = np.cumsum(weights) / np.sum(weights)
    out[starts[one]] = np.minimum(np.searchsorted(cdf, rng.random(len(one)), side="right"), len(weights) - 1)
    groups = (np.flatnonzero((count > 1) & (count <= 8)), np.flatnonzero(count > 8))
    for rows in (group[i:i + 65536] for group in groups for i in range(0, len(group), 65536)):
        k = int(min(len(weights), count[rows].max()))
        keys = rng.standard_exponential((len(rows), len(weights)), dtype=np.float32) / weights.astype(np.float32)
        best = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < len(weights) else np.argsort(keys, axis=1)
        best = np.take_along_axis(best, np.argsort(np.take_along_axis(keys, best, 1), axis=1), 1)
        keep = np.arange(k)[None, :] < count[rows][:, None]
        out[(starts[rows][:, None] + np.arange(k)[None, :])[keep]] = best[keep]
    return out


def _read_table(name: str) -> list[dict[str, str]]:
    text = (resources.files("ceecore") / "data" / "synth" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s types (itself if it has them already)."""
    if batch.schema.equals(schema):
        return batch
    return pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]


def _coded(vocabulary: pa.Array, index: np.ndarray, valid: np.ndarray | None = None) -> pa.DictionaryArray:
    """``vocabulary[index]`` as a dictionary array, null where ``valid`` is False."""
    codes = pa.array(index, pa.int32(), mask=None if valid is None else ~valid)
    return pa.DictionaryArray.from_arrays(codes, vocabulary)


# ---------------------------------------------------------------- the world


class Synthesizer:
    """The world of one :class:`SynthConfig`, and the entry lines filed in it.

    Building the world is fast and takes memory in proportion to the number of
    accounts (not lines); :meth:`batches` then streams lines in constant memory.
    """

    def __init__(self, config: SynthConfig | None = None, centers: CenterMap | None = None,
                 threads: int | None = None) -> None:
        self.config = config or SynthConfig()
        self._threads = resolve_threads(threads)
        self.centers = centers or CenterMap.default()
        self.schema = arrow_schema(CANONICAL).append(pa.field("scheme", pa.string())).append(
            pa.field("duty_lost", pa.float64()))
        self.coded_schema = pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in CODED else f
                                       for f in self.schema])
        rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(0,)))
        # The schemes' draws: the world's stream for the default shapes (as they always
        # were), a stream of their own for the variants.
        schemes = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(2,))) \
            if self.config.variants else rng
        self._calendar()
        self._countries()
        self._ports()
        self._products(rng)
        self._accounts(rng, schemes)
        self._catalogue(rng)
        self._schemes(schemes)
        self._identities(rng)
        self._day_lines(rng)
        self.trend = self._trend() if self.config.trend else None
        if self.config.disparities:
            self._disparity_draws(np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(4,))))
        self._compact()

    # ------------------------------------------------------------ world building

    def _calendar(self) -> None:
        cfg = self.config
        days = np.arange(cfg.days)
        first = np.datetime64(cfg.start, "D")
        weekday = (days + cfg.start.weekday()) % 7
        doy = (first + days - first.astype("datetime64[Y]")).astype(np.int64)
        self.day_dates = first + days
        # Peak in early October (the pre-holiday rush), trough in early April.
        self.season = (1 + cfg.seasonality * np.cos(2 * np.pi * (doy - 280) / 365.25)) * _WEEKDAY[weekday]
        self.season_cum = np.r_[0.0, np.cumsum(self.season)]

    def _season_mass(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Sum of the seasonal weights over days first..last (inclusive)."""
        return self.season_cum[np.asarray(last) + 1] - self.season_cum[np.asarray(first)]

    def _countries(self) -> None:
        rows = _read_table("origins.csv")
        self.country_codes = [r["country"] for r in rows]
        self.country_weight = np.array([float(r["weight"]) for r in rows])
        self.country_price = np.log([float(r["price"]) for r in rows])
        programs = sorted({r["program"] for r in rows if r["program"]})
        self.programs = pa.array(programs)
        self.country_program = np.array([programs.index(r["program"]) if r["program"] else -1 for r in rows])
        self.hubs = np.array([i for i, r in enumerate(rows) if r["hub"]])
        self.china = self.country_codes.index("CN")
        self.country_bytes = np.frombuffer("".join(self.country_codes).encode(), np.uint8).reshape(-1, 2)
        self.country_text = _fixed_text(self.country_bytes)

    def _ports(self) -> None:
        rows = _read_table("ports.csv")
        self.port_codes = np.array([int(r["port"]) for r in rows])
        self.port_weight = np.array([float(r["weight"]) for r in rows])
        self.port_text = _fixed_text(_digits(self.port_codes, 4))

    def _products(self, rng: np.random.Generator) -> None:
        """HTS10 products under headings of every Center (its heading exceptions included)."""
        cfg = self.config
        epoch_starts, table = self.centers.lookup_tables()
        end_day = int((np.datetime64(cfg.end, "D") - np.datetime64("1970-01-01", "D")).astype(int))
        row = table[int(np.searchsorted(epoch_starts, end_day, side="right")) - 1]
        headings = np.flatnonzero((row >= 0) & (np.arange(10000) % 100 != 0) & (np.arange(10000) < 9800))
        exceptions = {int(r.prefix) for r in self.centers.rules if r.level == "heading" and r.center}
        weight = np.array([_CENTER_WEIGHT.get(code, 10) for code in self.centers.codes], float)
        wanted = np.zeros(len(headings), bool)
        for c in range(len(self.centers.codes)):
            mine = headings[row[headings] == c]
            if len(mine) == 0:
                continue
            n = min(len(mine), max(2, round(cfg.products / 4 * weight[c] / weight.sum())))
            chosen = rng.choice(mine, size=n, replace=False)
            wanted[np.isin(headings, chosen)] = True
        wanted |= np.isin(headings, list(exceptions))
        headings = headings[wanted]
        per_heading = 1 + rng.poisson(3.0, size=len(headings))
        heading = np.repeat(headings, per_heading)
        hts = np.unique(heading.astype(np.int64) * 10**6 + rng.integers(1, 10**6, size=len(heading)))
        heading = hts // 10**6
        chapter = heading // 100
        n = len(hts)
        self.n_products = n
        self.product_hts = hts
        self.product_center = row[heading].astype(np.int64)
        self.hts_s = _fixed(_digits(hts, 10))

        textile = (chapter >= 50) & (chapter <= 67)
        free_share = np.where(np.isin(chapter, [27, 30, 49, 71, 84, 85, 88, 90, 97]), 0.7, np.where(textile, 0.05, 0.4))
        rate = np.where(textile, rng.choice(_TEXTILE_RATES, size=n), rng.choice(_RATES, size=n))
        self.product_rate = np.where(rng.random(n) < free_share, 0.0, rate)
        self.product_301 = rng.choice(_SECTION_301[0], size=n, p=_SECTION_301[1])

        unit = np.full(n, _KG)
        unit[np.isin(chapter, [30, 41, 42, 43, 49, 65, 66, 67, 71, *range(84, 98)])] = _NO
        unit[np.isin(chapter, [57, 58, 59, 60])] = _M2
        unit[np.isin(chapter, [61, 62, 63])] = _DOZ
        unit[chapter == 64] = _PRS
        unit[(chapter == 22) | (chapter == 27)] = _L
        unit[rng.random(n) < 0.05] = _X
        self.product_unit = unit
        self.product_log_value = rng.normal(_UNIT_LOG_VALUE[unit, 0], _UNIT_LOG_VALUE[unit, 1])
        self.product_log_kg = rng.normal(_UNIT_LOG_KG[unit, 0], _UNIT_LOG_KG[unit, 1])
        self.product_popularity = rng.lognormal(0.0, 1.2, size=n)

        # A lower-duty sibling in the same heading (the misclassification target), or -1.
        order = np.lexsort((self.product_rate, heading))
        first = np.r_[True, heading[order][1:] != heading[order][:-1]]
        cheapest = np.empty(n, np.int64)
        cheapest[order] = order[np.maximum.accumulate(np.where(first, np.arange(n), 0))]
        self.product_sibling = np.where(self.product_rate[cheapest] < self.product_rate, cheapest, -1)

        # National origin mix: 3 to 8 countries, the first most common.
        k = rng.integers(3, 9, size=n)
        self.po_count = k
        self.po_start = np.r_[0, np.cumsum(k)[:-1]]
        self.po_country = _sample_distinct(rng, self.country_weight, k)
        # origin_cum[k]: cumulative shares of the k origins (rank r has weight 1 / (r + 1) ** 1.3),
        # padded with 2 so that comparing a uniform draw against it counts the rank.
        self.origin_cum = np.full((9, 8), 2.0)
        for count in range(1, 9):
            w = 1.0 / np.arange(1, count + 1) ** 1.3
            self.origin_cum[count, :count - 1] = np.cumsum(w / w.sum())[:-1]

        # Product pools per Center, by popularity, for building catalogues.
        by_center = np.argsort(self.product_center, kind="stable")
        self.pool_product = by_center
        self.pool_cdf = _segment_cdf(self.product_center[by_center], self.product_popularity[by_center])
        self.all_cdf = _segment_cdf(np.zeros(n, np.int64), self.product_popularity)

    def _accounts(self, rng: np.random.Generator, schemes: np.random.Generator) -> None:
        """Regular accounts, then the new high-volume importers of that scheme; port
        shopping picked among the regular ones. ``schemes`` draws the schemes' choices.

        Variant shapes: a new importer files few lines (about :data:`_NEW_IMPORTER_LINES`)
        each carrying many times the quantity and value of a usual line of its product,
        as when a front company brings in whole containers under few entries; a port
        shopper keeps its usual ports and sends only a share of its entries to a few
        more (3 to 6), as a trader does with the goods it expects a port to look at.
        """
        cfg = self.config
        a = cfg.accounts
        assert a is not None
        days = cfg.days
        # Heavy-tailed daily intensity: a few importers file most lines.
        intensity = rng.permutation((1.0 / np.arange(1, a + 1) ** 0.85)) * rng.lognormal(0, 0.3, size=a)
        first = np.zeros(a, np.int64)
        last = np.full(a, days - 1, np.int64)
        late = rng.random(a) < 0.08
        first[late] = rng.integers(0, days, size=int(late.sum()))
        early = ~late & (rng.random(a) < 0.07)
        last[early] = rng.integers(0, days, size=int(early.sum()))
        weight = np.array([_CENTER_WEIGHT.get(code, 10) for code in self.centers.codes], float)
        home = rng.choice(len(weight), size=a, p=weight / weight.sum())
        scheme = np.zeros(a, np.int64)

        regular_mass = float(np.sum(intensity * self._season_mass(first, last)))
        rate = cfg.scheme_rates["new_importer"]
        if rate > 0 and cfg.lines > 0:
            # Together these take `rate` of all lines, each at the daily intensity of the
            # 99.5th percentile account (variants: about _NEW_IMPORTER_LINES lines each),
            # from a start late in the period.
            mass = rate * regular_mass / (1 - rate)
            most = 4096 if cfg.variants else 1024
            start = schemes.integers(int(days * 0.65), max(int(days * 0.9), int(days * 0.65) + 1), size=most)
            if cfg.variants:
                count = int(max(1, min(most, round(rate * cfg.lines / _NEW_IMPORTER_LINES))))
            else:
                high = float(np.quantile(intensity, 0.995))
                count = int(max(1, min(most, round(mass / (high * float(np.mean(self._season_mass(start, days - 1))))))))
            start = start[:count]
            new_intensity = mass / count / self._season_mass(start, np.full(count, days - 1))
            intensity = np.r_[intensity, new_intensity]
            first = np.r_[first, start]
            last = np.r_[last, np.full(count, days - 1)]
            home = np.r_[home, schemes.choice(len(weight), size=count, p=weight / weight.sum())]
            scheme = np.r_[scheme, np.full(count, _NEW_IMPORTER)]
        n = len(intensity)
        self.n_accounts = n
        self.account_intensity = intensity
        self.account_first = first
        self.account_last = last
        self.account_home = home
        self.account_scheme = scheme
        total_mass = float(np.sum(intensity * self._season_mass(first, last)))
        self.account_share = intensity * self._season_mass(first, last) / total_mass  # expected share of lines
        expected = self.account_share * cfg.lines

        beta_b = 1.5 * (1 - cfg.away_share) / max(cfg.away_share, 1e-9)
        self.account_away = rng.beta(1.5, beta_b, size=n) if cfg.away_share > 0 else np.zeros(n)
        self.account_items = np.clip(np.round(2 + 1.2 * expected**0.45 * rng.lognormal(0, 0.3, size=n)), 2, 300).astype(np.int64)
        self.account_brokers = 1 + (rng.random(n) < 0.3)
        self.account_undervalue = np.where(scheme == _NEW_IMPORTER, schemes.uniform(0.3, 0.6, size=n), 1.0)
        self.account_bulk = np.ones(n)  # a line's value, in usual lines of its product
        if cfg.variants:
            new = scheme == _NEW_IMPORTER
            self.account_bulk[new] = np.exp(schemes.uniform(*np.log(_NEW_IMPORTER_BULK), size=int(new.sum())))
        self.account_is_new = first > 0
        metals = self.centers.index_of("005") if "005" in self.centers.codes else -1
        self.account_adcvd = np.where(home == metals, 0.3, 0.01)  # share of entries of type 03

        # Port shopping: whole accounts, big enough for the spread to show, small
        # enough that the scheme's share can be met closely.
        self.account_port_count = np.clip(1 + rng.poisson(0.5 + 0.5 * np.log10(1 + expected)), 1, 8)
        target = cfg.scheme_rates["port_shopping"]
        candidates = np.flatnonzero((scheme == 0) & (expected >= 40))
        self.account_usual_ports = self.account_port_count.copy()  # where unshopped entries go
        self.account_shopped = np.zeros(n)  # share of entries sent to the other ports
        if cfg.variants:
            shopped = schemes.uniform(0.3, 0.7, size=len(candidates))
            picked = self._pick(schemes, np.arange(len(candidates)), self.account_share[candidates] * shopped, target)
            chosen = candidates[picked]
            self.account_shopped[chosen] = shopped[picked]
        else:
            chosen = self._pick(schemes, candidates, self.account_share[candidates], target)
        self.account_scheme[chosen] = _PORT_SHOPPING
        self.account_undervalue[chosen] = schemes.uniform(0.6, 0.85, size=len(chosen))
        if cfg.variants:
            self.account_port_count[chosen] += schemes.integers(3, 7, size=len(chosen))
        else:
            self.account_port_count[chosen] = schemes.integers(12, 31, size=len(chosen))
        self.port_skew = np.where((self.account_scheme == _PORT_SHOPPING) & (not cfg.variants), 1.0, _PORT_SKEW)
        count = self.account_port_count
        self.account_port_start = np.r_[0, np.cumsum(count)[:-1]]
        self.account_port = _sample_distinct(rng, self.port_weight, count)

    @staticmethod
    def _pick(rng: np.random.Generator, candidates: np.ndarray, share: np.ndarray, target: float) -> np.ndarray:
        """Candidates in random order until their expected shares add up to ``target``.

        Candidates bigger than a tenth of the target come after the others, so that many
        small ones make up the share and the realised rate stays close to it.
        """
        if target <= 0 or len(candidates) == 0:
            return candidates[:0]
        order = rng.permutation(len(candidates))
        order = order[np.argsort(share[order] > target / 10, kind="stable")]
        cum = np.cumsum(share[order])
        n = int(np.searchsorted(cum, target, side="left"))
        if n < len(order) and (n == 0 or cum[n] - target < target - cum[n - 1]):
            n += 1
        return candidates[order[:n]]

    def _both_sides(self, items: np.ndarray, fraction: np.ndarray) -> np.ndarray:
        """Whether items are expected to have a few lines both inside the ``fraction`` of
        their lines a scheme changes and outside it (before a switch, at other ports):
        a scheme defined by a contrast (a switch, a difference across ports) needs both."""
        lines = self.item_share[items] * self.config.lines
        return (lines * fraction >= 5) & (lines * (1 - fraction) >= 5)

    def _catalogue(self, rng: np.random.Generator) -> None:
        """Each account's products (home industry first), their origins and line shares."""
        n_items = self.account_items
        away = np.where(self.account_away > 0.02, np.maximum(1, np.round(n_items * self.account_away)), 0)
        away = np.minimum(away, n_items - 1).astype(np.int64)
        self.account_home_items = n_items - away
        self.account_away_share = np.where(away > 0, self.account_away, 0.0)
        self.account_item_start = np.r_[0, np.cumsum(n_items)[:-1]]
        item_account = np.repeat(np.arange(self.n_accounts), n_items)
        rank = np.arange(len(item_account)) - self.account_item_start[item_account]
        home_count = self.account_home_items[item_account]
        is_away = rank >= home_count
        self.n_items = len(item_account)
        product = np.empty(self.n_items, np.int64)
        home = self.account_home[item_account]
        # Products by popularity (home ones from the home Center's pool), drawn again
        # where an account got one twice, so each is in a catalogue at most once.
        redraw = np.ones(self.n_items, bool)
        checked = np.arange(self.n_items)  # the items of the accounts that may hold a product twice
        for _ in range(8):
            u = rng.random(self.n_items)
            at_home, away = redraw & ~is_away, redraw & is_away
            pick = np.searchsorted(self.pool_cdf, home[at_home] + u[at_home], side="right")
            product[at_home] = self.pool_product[np.minimum(pick, self.n_products - 1)]
            product[away] = np.minimum(np.searchsorted(self.all_cdf, u[away], side="right"), self.n_products - 1)
            key = item_account[checked] * self.n_products + product[checked]
            order = np.argsort(key, kind="stable")
            redraw = np.zeros(self.n_items, bool)
            redraw[checked[order[1:]]] = key[order[1:]] == key[order[:-1]]
            if not redraw.any():
                break
            # Only an account with an item drawn again can hold a product twice next time.
            again = np.unique(item_account[redraw])
            counts = n_items[again]
            checked = np.repeat(self.account_item_start[again] - np.r_[0, np.cumsum(counts)[:-1]], counts) \
                + np.arange(counts.sum())
        self.item_unique = ~redraw
        self.item_account = item_account
        self.item_product = product
        away_share = self.account_away_share[item_account]
        away_count = n_items[item_account] - home_count
        share = np.where(
            is_away,
            away_share * _slot_share(np.maximum(rank - home_count, 0), np.maximum(away_count, 1), _ITEM_SKEW),
            (1 - away_share) * _slot_share(np.minimum(rank, home_count - 1), home_count, _ITEM_SKEW),
        )
        self.item_share = self.account_share[item_account] * share  # expected share of all lines

        # One to three origins per item from the product's national mix.
        n_sources = rng.choice(3, size=self.n_items, p=[0.6, 0.3, 0.1]) + 1
        self.item_sources = n_sources
        self.item_source_start = np.r_[0, np.cumsum(n_sources)[:-1]]
        source_item = np.repeat(np.arange(self.n_items), n_sources)
        product = self.item_product[source_item]
        u = rng.random(len(source_item))
        cum = self.origin_cum[self.po_count[product]]
        rank = np.zeros(len(source_item), np.int64)
        for r in range(cum.shape[1]):
            rank += u >= cum[:, r]
        self.source_country = self.po_country[self.po_start[product] + rank]
        self.source_item = source_item
        # Whether the item claims the preference its origin's program offers.
        self.source_claims = (self.country_program[self.source_country] >= 0) & (
            self.product_rate[self.item_product[source_item]] > 0) & (rng.random(len(source_item)) < _CLAIM_SHARE)

    def _schemes(self, rng: np.random.Generator) -> None:
        """Item-level schemes, most constrained first, on items of accounts without one.

        The variant shapes (``SynthConfig.variants``) are what real schemes look like
        more often than the clean default ones; each is sized by the lines it labels:

        - transshipment: after the switch only a share (40-80%) of the lines take the
          new origin while the old one goes on, as when an importer tries a second
          route; the new origin is the product's most common hub origin where it has
          one (so not rare nationally), and 30% keep the old manufacturer's MID;
        - misclassification: the dearer number is misdeclared at one port only, and
          there on a share (30-80%) of the lines, as a broker at that port would;
        - preference misuse: the preference is claimed on a share (20-70%) of the lines;
        - undervaluation: half the share shallow (70-85% of the value) on every line
          of items with many lines, half deep (25-60%) on a few (5-25%) of an item's
          lines, as when only some shipments are invoiced twice.
        """
        cfg = self.config
        n = self.n_items
        self.item_scheme = np.zeros(n, np.int64)
        self.item_undervalue = np.ones(n)
        self.item_fraction = np.ones(n)  # share of an item's lines within the scheme's reach it takes
        self.item_same_mfr = np.zeros(0, np.int64)  # transshipped items that keep their manufacturer
        self.item_switch_day = np.full(n, np.iinfo(np.int64).max)
        self.item_new_country = np.full(n, -1)
        self.item_wrong_ports = np.zeros(n, np.int64)  # bit j: misdeclared at the account's port slot j
        self.item_claim = np.full(n, -1)  # program wrongly claimed
        account = self.item_account
        free = self.account_scheme[account] == 0
        product = self.item_product
        single = self.item_sources == 1
        first_source = self.item_source_start
        origin = self.source_country[first_source]
        dutiable = self.product_rate[product] > 0

        # Transshipment: a Chinese product under a Section 301 surcharge moves to a hub.
        ok = free & single & (origin == self.china) & (self.product_301[product] > 0) & self.item_unique
        a_first, a_last = self.account_first[account], self.account_last[account]
        switch = a_first + ((a_last - a_first) * rng.uniform(0.25, 0.75, size=n)).astype(np.int64)
        after = self._season_mass(switch, a_last) / np.maximum(self._season_mass(a_first, a_last), 1e-12)
        moving = rng.uniform(0.4, 0.8, size=n) if cfg.variants else 1.0  # of the lines after the switch
        reach = after * moving
        cand = np.flatnonzero(ok)
        cand = cand[self._both_sides(cand, reach[cand])]
        chosen = self._pick(rng, cand, self.item_share[cand] * reach[cand], cfg.scheme_rates["transshipment"])
        self.item_scheme[chosen] = _TRANSSHIPMENT
        self.item_switch_day[chosen] = switch[chosen]
        self.item_new_country[chosen] = rng.choice(self.hubs, size=len(chosen))
        if cfg.variants:
            self.item_fraction[chosen] = moving[chosen]
            hub = self._national_hub(product[chosen])
            self.item_new_country[chosen] = np.where(hub >= 0, hub, self.item_new_country[chosen])
            self.item_same_mfr = chosen[rng.random(len(chosen)) < 0.3]

        # Misclassification: a lower-duty sibling HTS, declared at some of the account's ports.
        ports = self.account_port_count[account]
        sibling = self.product_sibling[product]
        chinese = origin == self.china
        cheaper = (self.product_rate[sibling] + self.product_301[sibling] * chinese
                   < self.product_rate[product] + self.product_301[product] * chinese)  # after any surcharge
        ok = (free & (self.item_scheme == 0) & (sibling >= 0) & cheaper & single & (ports >= (1 if cfg.variants else 2))
              & ~self.source_claims[first_source])
        cand = np.flatnonzero(ok)
        ports = ports[cand]
        share = np.ones(len(cand))  # of the lines at the wrong ports
        if cfg.variants:  # one port, a share of the lines there
            slot = rng.integers(0, np.minimum(ports, 8))
            share = rng.uniform(0.3, 0.8, size=len(cand))
            mask = np.left_shift(1, slot)
            wrong = _slot_share(slot, ports, self.port_skew[account[cand]]) * share
        else:
            mask = rng.integers(1, 2 ** np.minimum(ports, 8) - 1)  # a non-empty proper subset of slots
            wrong = np.zeros(len(cand))
            for slot in range(8):
                on = ((mask >> slot) & 1).astype(bool) & (slot < ports)
                wrong[on] += _slot_share(np.full(int(on.sum()), slot), ports[on], self.port_skew[account[cand[on]]])
        keep = self._both_sides(cand, wrong)
        cand, mask, wrong, share = cand[keep], mask[keep], wrong[keep], share[keep]
        chosen = self._pick(rng, np.arange(len(cand)), self.item_share[cand] * wrong, cfg.scheme_rates["misclassification"])
        self.item_scheme[cand[chosen]] = _MISCLASSIFICATION
        self.item_wrong_ports[cand[chosen]] = mask[chosen]
        self.item_fraction[cand[chosen]] = share[chosen]

        # Preference misuse: a preference claimed for goods from a country without one.
        ok = free & (self.item_scheme == 0) & single & dutiable & (self.country_program[origin] < 0)
        cand, share = self._partial(rng, np.flatnonzero(ok), 0.2, 0.7)
        picked = self._pick(rng, np.arange(len(cand)), self.item_share[cand] * share, cfg.scheme_rates["preference_misuse"])
        chosen = cand[picked]
        self.item_scheme[chosen] = _PREFERENCE
        self.item_claim[chosen] = rng.integers(0, len(self.programs), size=len(chosen))
        self.item_fraction[chosen] = share[picked]

        # Undervaluation: a fraction of the real value declared, on dutiable goods.
        ok = free & (self.item_scheme == 0) & dutiable & ~self.source_claims[first_source]
        cand = np.flatnonzero(ok)
        rate = cfg.scheme_rates["undervaluation"]
        if cfg.variants:  # shallow on items with many lines, then deep on a few lines of others
            many = cand[self.item_share[cand] * cfg.lines >= _SHALLOW_LINES]
            chosen = self._pick(rng, many, self.item_share[many], rate / 2)
            self.item_scheme[chosen] = _UNDERVALUATION
            self.item_undervalue[chosen] = rng.uniform(0.70, 0.85, size=len(chosen))
            rate /= 2
            cand = cand[self.item_scheme[cand] == 0]
        cand, share = self._partial(rng, cand, 0.05, 0.25)
        picked = self._pick(rng, np.arange(len(cand)), self.item_share[cand] * share, rate)
        chosen = cand[picked]
        self.item_scheme[chosen] = _UNDERVALUATION
        self.item_undervalue[chosen] = rng.uniform(0.25, 0.6, size=len(chosen))
        self.item_fraction[chosen] = share[picked]

    def _partial(self, rng: np.random.Generator, cand: np.ndarray, low: float, high: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate items and the share of their lines a scheme takes: all of them in
        the default shapes; in the variants a share drawn in [low, high), keeping the
        items with lines both inside and outside it (else the scheme is not partial)."""
        if not self.config.variants:
            return cand, np.ones(len(cand))
        share = rng.uniform(low, high, size=len(cand))
        keep = self._both_sides(cand, share)
        return cand[keep], share[keep]

    def _national_hub(self, product: np.ndarray) -> np.ndarray:
        """Each product's most common transshipment hub among its national origins, or -1."""
        rank = np.arange(self.origin_cum.shape[1])
        count = self.po_count[product][:, None]
        country = self.po_country[self.po_start[product][:, None] + np.minimum(rank, count - 1)]
        hub = np.isin(country, self.hubs) & (country != self.china) & (rank < count)
        return np.where(hub.any(axis=1), country[np.arange(len(product)), hub.argmax(axis=1)], -1)

    def _identities(self, rng: np.random.Generator) -> None:
        """Importer numbers, filer codes and manufacturer IDs (MIDs), all distinct."""
        cfg = self.config
        n = self.n_accounts
        start_year = cfg.start.year
        new = self.account_first > 0
        cbp = (rng.random(n) < 0.12) | (self.account_scheme == _NEW_IMPORTER)
        ids = np.empty((n, 12), np.uint8)
        # IRS employer numbers: NN-NNNNNNN plus a two-digit suffix.
        irs = np.flatnonzero(~cbp)
        v = _permute(np.arange(len(irs)), len(_EIN_PREFIXES) * 10**7, cfg.seed)
        ids[irs] = np.concatenate([_digits(_EIN_PREFIXES[v // 10**7], 2), np.full((len(irs), 1), ord("-"), np.uint8),
                                   _digits(v % 10**7, 7), _digits(np.zeros(len(irs)), 2)], axis=1)
        # CBP-assigned: YYDDPP-NNNNN, the year it was assigned and a port; accounts new
        # in the period got theirs that year, older ones in the 15 years before.
        n_ports = len(self.port_codes)
        for group, years in ((cbp & ~new, 15), (cbp & new, 1)):
            rows = np.flatnonzero(group)
            v = _permute(np.arange(len(rows)), years * n_ports * 10**5, cfg.seed + years)
            dates = self.day_dates[self.account_first[rows]].astype("datetime64[Y]").astype(np.int64) + 1970
            year = np.where(years == 1, dates, start_year - 1 - v // (n_ports * 10**5))
            ids[rows] = np.concatenate([_digits(year % 100, 2), _digits(self.port_codes[(v // 10**5) % n_ports], 4),
                                        np.full((len(rows), 1), ord("-"), np.uint8), _digits(v % 10**5, 5)], axis=1)
        self.importer_s = _fixed(ids)

        # Brokers: Zipf-sized, three alphanumeric characters each.
        n_brokers = int(min(30_000, max(20, n // 40)))
        alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
        code = _permute(np.arange(n_brokers), 26 * 36 * 36, cfg.seed)  # a letter, then two of 36
        filer = alphabet[np.stack([10 + code // 1296, code // 36 % 36, code % 36], axis=1)]
        self.filer_s = _fixed(filer)
        self.filer_text = _fixed_text(self.filer_s)
        # Luhn sums of the check digit's payload: the filer code's part, and the parts of
        # the serial's first three and last four digits (doubling every other position
        # from the right of the 10-character payload).
        self.filer_luhn = _luhn(filer, first_doubled=False)
        self.serial_hi = _fixed(_digits(np.arange(1000), 3))
        self.serial_lo = _fixed(_digits(np.arange(10000), 4))
        self.hi_luhn = _luhn(_digits(np.arange(1000), 3), first_doubled=True)
        self.lo_luhn = _luhn(_digits(np.arange(10000), 4), first_doubled=False)
        weight = 1.0 / np.arange(1, n_brokers + 1) ** 0.8
        self.account_broker = rng.choice(n_brokers, size=(n, 2), p=weight / weight.sum())
        self.broker_serial = rng.integers(0, 10**7, size=n_brokers)  # next entry serial, per filer

        # Manufacturers: one or two per account and origin (the MID is a function of
        # account, country and slot, so items sharing them share it); a transshipped
        # item gets a new one in its new country.
        key = self.item_account[self.source_item] * 1024 + self.source_country
        per_key = 1 + (_mix(key.astype(np.uint64)) % np.uint64(3) == 0)
        slot = (self.item_product[self.source_item] % per_key).astype(np.int64)
        moved = np.flatnonzero(self.item_new_country >= 0)
        keys = np.r_[key * 4 + slot, (self.item_account[moved] * 1024 + self.item_new_country[moved]) * 4 + 3]
        self.item_new_mfr = np.full(self.n_items, -1)
        self.item_new_mfr[moved] = len(key) + np.arange(len(moved))
        self.item_new_mfr[self.item_same_mfr] = self.item_source_start[self.item_same_mfr]  # its one source's MID
        self.mid_text = self._mids(keys)

    def _mids(self, keys: np.ndarray) -> pa.Array:
        """MIDs for (account * 1024 + country) * 4 + slot keys: the country, six letters of
        a name, one to four digits of an address, three letters of a city."""
        chunks = np.array_split(keys, max(1, -(-len(keys) // 65536)))
        return pa.concat_arrays(list(in_order(chunks, self._mid_chunk, self._threads)))

    def _mid_chunk(self, keys: np.ndarray) -> pa.StringArray:
        country = (keys // 4) % 1024
        h = _mix(keys.astype(np.uint64) ^ np.uint64(self.config.seed))
        name = _letters(h, 6)
        digits = 1 + ((h >> np.uint64(48)) % np.uint64(4)).astype(np.int64)
        number = 1 + ((h >> np.uint64(52)) % np.uint64(9999)).astype(np.int64) % (10**digits - 1)
        city = _letters(_mix(((h >> np.uint64(60)) % np.uint64(8)) * np.uint64(1024) + country.astype(np.uint64)), 3)
        tail = np.concatenate([_digits(number, 4), city], axis=1)  # the address's digits, then the city
        tail = np.take_along_axis(tail, np.minimum(4 - digits[:, None] + np.arange(7), 6), axis=1)
        mid = np.concatenate([self.country_bytes[country], name, tail], axis=1)
        return _packed_text(mid, 11 + digits)

    def _day_lines(self, rng: np.random.Generator) -> None:
        """How many lines each day gets: seasonality times the accounts active that day."""
        cfg = self.config
        active = np.zeros(cfg.days + 1)
        np.add.at(active, self.account_first, self.account_intensity)
        np.add.at(active, self.account_last + 1, -self.account_intensity)
        weight = self.season * np.maximum(np.cumsum(active)[:-1], 0)
        self.account_cdf = np.cumsum(self.account_intensity)
        self.day_line_count = rng.multinomial(cfg.lines, weight / weight.sum()) if cfg.lines else np.zeros(cfg.days, np.int64)

    def _trend(self) -> Trend:
        """The diversion of :class:`Trend`: the busiest HTS6 (by expected lines) and its
        main origin, from the first day of the month in the middle of the period."""
        slot_weight = np.array([[1.0, 0, 0], [0.8, 0.2, 0], [0.7, 0.2, 0.1]])
        item = self.source_item
        rank = np.arange(len(item)) - self.item_source_start[item]
        lines = self.item_share[item] * slot_weight[self.item_sources[item] - 1, rank]
        hts6 = self.product_hts[self.item_product[item]] // 10**4
        codes, inverse = np.unique(hts6, return_inverse=True)
        busiest = np.bincount(inverse, weights=lines).argmax()
        mine = inverse == busiest
        by_country = np.bincount(self.source_country[mine], weights=lines[mine], minlength=len(self.country_codes))
        to = next(c for c in _TREND_TO if by_country[self.country_codes.index(c)] == 0)
        middle = self.config.start + dt.timedelta(days=self.config.days // 2)
        self.trend_product = (self.product_hts // 10**4) == codes[busiest]
        self.trend_from, self.trend_to = int(by_country.argmax()), self.country_codes.index(to)
        self.trend_day = (dt.date(middle.year, middle.month, 1) - self.config.start).days
        return Trend(f"{codes[busiest]:06d}", self.country_codes[self.trend_from], to,
                     dt.date(middle.year, middle.month, 1), _TREND_SHARE)

    def _diverted(self, country: np.ndarray, product: np.ndarray, day: np.ndarray, first_day: int,
                  part: int) -> np.ndarray:
        """``country`` with the trend's lines moved to its new origin (a stream of its own)."""
        draw = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(11, first_day, part)))
        moving = (np.take(self.trend_product, product) & (country == self.trend_from) & (day >= self.trend_day)
                  & (draw.random(len(country)) < _TREND_SHARE))
        return np.where(moving, self.trend_to, country)

    def _compact(self) -> None:
        """Halves the big per-item and per-source arrays (int64 -> int32, float64 -> float32
        where no precision that matters is lost): the world is most of the memory."""
        del self.item_share, self.source_item
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.size > 10_000 and value.dtype == np.int64:
                if value.size == 0 or (value.min() >= -(2**31) and value.max() < 2**31):
                    setattr(self, name, value.astype(np.int32))
        self.item_undervalue = self.item_undervalue.astype(np.float32)
        self.item_fraction = self.item_fraction.astype(np.float32)

    def _disparity_draws(self, rng: np.random.Generator) -> None:
        """Where the port disparities go: two of the five busiest ports, a Center, and a
        dutiable product among the five with the most unclaimed lines of one origin
        expected both at the port and elsewhere (so that the disparity shows in lines)."""
        busiest = np.argsort(-self.port_weight, kind="stable")[:5]
        self.inspect_port, self.free_port = (int(p) for p in rng.choice(busiest, size=2, replace=False))
        self.inspect_center = int(rng.choice(np.unique(self.product_center)))
        # Expected lines of each item at the port and elsewhere (items x their account's ports),
        # then of each source (item x origin) that claims no preference.
        ports = self.account_port_count[self.item_account]
        item = np.repeat(np.arange(self.n_items), ports)
        slot = np.arange(len(item)) - np.repeat(np.cumsum(ports) - ports, ports)
        account = self.item_account[item]
        share = self.item_share[item] * _slot_share(slot, ports[item], self.port_skew[account])
        here = self.account_port[self.account_port_start[account] + slot] == self.free_port
        at_port = np.bincount(item[here], share[here], minlength=self.n_items)[self.source_item]
        elsewhere = np.bincount(item[~here], share[~here], minlength=self.n_items)[self.source_item]
        rank = np.arange(len(self.source_item)) - self.item_source_start[self.source_item]
        kept = np.array([[1.0, 0, 0], [0.8, 0.2, 0], [0.7, 0.2, 0.1]])[self.item_sources[self.source_item] - 1, rank]
        kept = kept * ~self.source_claims
        product = self.item_product[self.source_item]
        groups, group = np.unique(product * 1000 + self.source_country, return_inverse=True)
        fewer = np.minimum(np.bincount(group, at_port * kept), np.bincount(group, elsewhere * kept))
        fewer[self.product_rate[groups // 1000] <= 0] = -1.0
        self.free_product = int(groups[rng.choice(np.argsort(-fewer, kind="stable")[:5])] // 1000)

    def disparities(self) -> pa.Table:
        """The planted port disparities (none without ``SynthConfig.disparities``), named
        as ``ceecore uniformity`` reports them: measure, Center, port, HTS number."""
        if not self.config.disparities:
            return pa.table({"measure": pa.array([], pa.string()), "center": pa.array([], pa.string()),
                             "port": pa.array([], pa.string()), "hts": pa.array([], pa.string())})
        ports = [f"{self.port_codes[p]:04d}" for p in (self.inspect_port, self.free_port)]
        return pa.table({"measure": ["inspection_rate", "duty_rate"],
                         "center": [self.centers.codes[self.inspect_center],
                                    self.centers.codes[int(self.product_center[self.free_product])]],
                         "port": ports, "hts": ["", f"{int(self.product_hts[self.free_product]):010d}"]})

    # ------------------------------------------------------------ facts for users and tests

    def accounts(self) -> pa.Table:
        """Ground truth per account: home Center, activity window, account-level scheme."""
        codes = pa.array(self.centers.codes)
        names = pa.array([None, *SCHEMES])
        return pa.table({
            "importer_id": _fixed_text(self.importer_s),
            "home_center": pc.take(codes, pa.array(self.account_home)),
            "active_from": pa.array(self.day_dates[self.account_first]),
            "active_to": pa.array(self.day_dates[self.account_last]),
            "expected_lines": pa.array(self.account_share * self.config.lines),
            "ports": pa.array(self.account_port_count),
            "products": pa.array(self.account_items),
            "scheme": pc.take(names, pa.array(self.account_scheme)),
        })

    # ------------------------------------------------------------ lines

    def blocks(self, threads: int | None = None, coded: bool = False) -> Iterator[pa.RecordBatch]:
        """The lines in generation order, one record batch per part of a day; ``coded``:
        the :data:`CODED` columns as dictionary arrays (:attr:`coded_schema`).

        Parts are generated on ``threads`` threads (numpy and Arrow release the GIL);
        only the entry serial numbers, which run on per filer, are drawn in order.
        """
        cfg = self.config
        serial = self.broker_serial.copy()
        dirty_at = (np.arange(cfg.dirty) * 2 + 1) * cfg.lines // (2 * cfg.dirty) if cfg.dirty else np.zeros(0, np.int64)
        parts = self._parts()
        schema = self.coded_schema if coded else self.schema
        done = 0
        for part in in_order(parts, lambda spec: self._part(*spec, coded=coded), resolve_threads(threads)):
            batch = self._numbered(part, serial, schema)
            size = batch.num_rows
            here = dirty_at[(dirty_at >= done) & (dirty_at < done + size)] - done
            if len(here):  # (contract-breaking copies are text a vocabulary does not hold)
                batch = _with_dirty(_cast(batch, self.schema), here, int(np.searchsorted(dirty_at, done)))
                batch = _cast(batch, schema)
            done += size
            yield batch

    def batches(self, batch_rows: int = 1 << 18, threads: int | None = None) -> Iterator[pa.RecordBatch]:
        """The lines as record batches of exactly ``batch_rows`` rows (the last may be shorter)."""
        for table in self.tables(batch_rows, threads):
            yield table.to_batches()[0] if table.column(0).num_chunks == 1 else table.combine_chunks().to_batches()[0]

    def tables(self, batch_rows: int = 1 << 18, threads: int | None = None, coded: bool = False) -> Iterator[pa.Table]:
        """The lines as tables of exactly ``batch_rows`` rows (the last may be shorter), each
        made of the parts' slices: writers take them as they are, with no copy to join them
        (``coded``: see :meth:`blocks`)."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        schema = self.coded_schema if coded else self.schema
        pieces: list[pa.RecordBatch] = []
        held = 0
        for block in self.blocks(threads, coded):
            offset = 0
            while offset < block.num_rows:
                take = min(batch_rows - held, block.num_rows - offset)
                pieces.append(block.slice(offset, take))
                held += take
                offset += take
                if held == batch_rows:
                    yield pa.Table.from_batches(pieces, schema)
                    pieces, held = [], 0
        if held:
            yield pa.Table.from_batches(pieces, schema)

    def table(self, threads: int | None = None) -> pa.Table:
        """All lines in one table (for small configurations)."""
        return pa.Table.from_batches(list(self.blocks(threads)), self.schema)

    def _parts(self) -> list[tuple[int, int, np.ndarray]]:
        """How the lines are cut into parts: ``(first day, part number, lines per day)``.

        Quiet days are grouped, up to BLOCK_LINES lines a part; a busy day is split in
        parts of at most BLOCK_LINES. This depends on the configuration only.
        """
        parts: list[tuple[int, int, np.ndarray]] = []
        group: list[int] = []
        count = self.day_line_count
        for day in np.flatnonzero(count):
            lines = int(count[day])
            if group and (sum(int(count[d]) for d in group) + lines > BLOCK_LINES or lines > BLOCK_LINES):
                parts.append((group[0], 0, count[group[0]:group[-1] + 1]))
                group = []
            if lines > BLOCK_LINES:
                cuts = np.linspace(0, lines, -(-lines // BLOCK_LINES) + 1).astype(np.int64)
                parts.extend((int(day), k, np.diff(cuts)[k:k + 1]) for k in range(len(cuts) - 1))
            else:
                group.append(int(day))
        if group:
            parts.append((group[0], 0, count[group[0]:group[-1] + 1]))
        return parts

    def _part(self, first_day: int, part: int, day_lines: np.ndarray, coded: bool = False) -> _Part:
        """``day_lines[i]`` lines of whole entries filed on day ``first_day + i``.

        An entry never spans two days or parts (the last of a part may be cut short).
        Everything but the entry numbers, which :meth:`_numbered` adds in order; the
        :data:`CODED` columns as dictionary arrays if ``coded``, else as text.
        """
        cfg = self.config
        take = np.take
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, first_day, part)))
        variant = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(3, first_day, part))) \
            if cfg.variants else None  # the variants' draws, apart so the default lines stay as they were
        size = int(day_lines.sum())
        # Entries of 1..many lines, cut where a day ends.
        lines_per_entry = np.minimum(rng.geometric(0.36, size=size // 2 + 16), 60)
        while lines_per_entry.sum() < size:
            lines_per_entry = np.r_[lines_per_entry, lines_per_entry]
        day_ends = np.cumsum(day_lines)
        ends = np.cumsum(lines_per_entry)
        ends = ends[ends < size]
        cuts = day_ends[day_lines > 0]
        at = np.searchsorted(ends, cuts)
        new = (at == len(ends)) | (ends[np.minimum(at, len(ends) - 1)] != cuts) if len(ends) else np.ones(len(cuts), bool)
        ends = np.insert(ends, at[new], cuts[new])
        lines_per_entry = np.diff(np.r_[0, ends])
        n_entries = len(ends)
        entry_day = first_day + np.searchsorted(day_ends, ends - 1, side="right")
        informal = (lines_per_entry == 1) & (rng.random(n_entries) < 0.14)  # type 11: one small line

        # Accounts by their intensity among those active that day: draws from all
        # accounts (sorted draws search fast; a permutation deals them to entries at
        # random), drawn again for an entry whose account was not active that day.
        cdf = self.account_cdf
        draws = np.sort(rng.random(n_entries)) * cdf[-1]
        account = np.minimum(np.searchsorted(cdf, draws, side="right"), self.n_accounts - 1)[rng.permutation(n_entries)]
        while True:
            redo = np.flatnonzero((take(self.account_first, account) > entry_day) | (take(self.account_last, account) < entry_day))
            if len(redo) == 0:
                break
            account[redo] = np.minimum(np.searchsorted(cdf, rng.random(len(redo)) * cdf[-1], side="right"), self.n_accounts - 1)
        u = rng.random((4, n_entries))
        if variant is None:
            port_slot = _skewed_slot(u[0], take(self.account_port_count, account), take(self.port_skew, account))
        else:  # a port shopper's shopped entries go to its other ports, evenly
            shopped = variant.random(n_entries) < take(self.account_shopped, account)
            usual = take(self.account_usual_ports, account)
            others = take(self.account_port_count, account) - usual
            port_slot = np.where(shopped, usual + np.minimum((u[0] * others).astype(np.int64), others - 1),
                                 _skewed_slot(u[0], usual, _PORT_SKEW))
        port = take(self.account_port, take(self.account_port_start, account) + port_slot)
        second = (take(self.account_brokers, account) == 2) & (u[1] < 0.25)
        broker = take(self.account_broker.ravel(), 2 * account + second)
        adcvd = u[2] < take(self.account_adcvd, account)
        entry_type = np.where(informal, 2, np.where(adcvd, 1, 0))  # 01, 03, 11
        # Each entry's place among its filer's entries of this part.
        order = np.argsort(broker, kind="stable")
        sorted_broker = broker[order]
        group_start = np.r_[0, np.flatnonzero(sorted_broker[1:] != sorted_broker[:-1]) + 1]
        ranks = np.empty(n_entries, np.int64)
        ranks[order] = np.arange(n_entries) - np.repeat(group_start, np.diff(np.r_[group_start, n_entries]))

        # Lines: a product of the account's catalogue, an origin of that product.
        line_entry = np.repeat(np.arange(n_entries), lines_per_entry)
        line_number = np.arange(1, size + 1) - np.repeat(np.cumsum(lines_per_entry) - lines_per_entry, lines_per_entry)
        acct = take(account, line_entry)
        line_day = take(entry_day, line_entry)
        u = rng.random((5, size))
        home_items = take(self.account_home_items, acct)
        away_items = take(self.account_items, acct) - home_items
        go_away = u[0] < take(self.account_away_share, acct)
        rank = np.where(go_away, home_items + _skewed_slot(u[1], np.maximum(away_items, 1), _ITEM_SKEW),
                        _skewed_slot(u[1], home_items, _ITEM_SKEW))
        item = take(self.account_item_start, acct) + rank
        n_src = take(self.item_sources, item)
        slot = (u[2] >= np.where(n_src == 2, 0.8, np.where(n_src == 3, 0.7, 2.0))).astype(np.int64)
        slot += u[2] >= np.where(n_src == 3, 0.9, 2.0)  # origin slots: 100%; 80/20%; 70/20/10%
        source = take(self.item_source_start, item) + slot
        product = take(self.item_product, item)
        true_country = take(self.source_country, source)

        # Schemes: the account's, else the item's where it applies to this line.
        scheme = take(self.account_scheme, acct)
        if variant is not None:
            scheme = np.where((scheme == _PORT_SHOPPING) & ~take(shopped, line_entry), 0, scheme)
        item_scheme = take(self.item_scheme, item)
        if np.any(item_scheme):
            line_port_slot = take(port_slot, line_entry)
            applies = ((item_scheme == _UNDERVALUATION) | (item_scheme == _PREFERENCE)
                       | ((item_scheme == _TRANSSHIPMENT) & (line_day >= take(self.item_switch_day, item)))
                       | ((item_scheme == _MISCLASSIFICATION) & ((take(self.item_wrong_ports, item) >> line_port_slot) & 1 == 1)))
            if variant is not None:  # partial schemes: a share of the lines within reach
                applies &= variant.random(size) < take(self.item_fraction, item)
            scheme = np.where((scheme == 0) & applies, item_scheme, scheme)
        moved = scheme == _TRANSSHIPMENT
        country = np.where(moved, take(self.item_new_country, item), true_country)
        if self.trend is not None:
            country = self._diverted(country, product, line_day, first_day, part)
        mfr = np.where(moved, take(self.item_new_mfr, item), source)  # MIDs: one per source, then the moved
        declared = np.where(scheme == _MISCLASSIFICATION, take(self.product_sibling, product), product)

        # Values: a log-normal unit value around the norm of the product and true origin.
        unit = take(self.product_unit, product)
        z = rng.standard_normal((2, size))
        log_uv = take(self.product_log_value, product) + take(self.country_price, true_country) + cfg.unit_value_sigma * z[0]
        uv = np.exp(log_uv)
        small = take(informal, line_entry)
        target = np.exp(np.where(small, 5.8 + 0.7 * z[1], 8.3 + 1.3 * z[1]))
        if variant is not None:  # a variant new importer's bulky lines
            target *= np.where(small, 1.0, take(self.account_bulk, acct))
        has_quantity = unit != _X
        pieces = target / uv
        quantity = np.where(take(_COUNTED, unit), np.maximum(1.0, np.round(pieces)), np.maximum(0.1, np.round(pieces, 1)))
        true_value = np.maximum(1.0, np.round(np.where(has_quantity, quantity * uv, target)))
        violation = scheme > 0
        undervalue = np.where(scheme == _UNDERVALUATION, take(self.item_undervalue, item), take(self.account_undervalue, acct))
        value = np.where(violation, np.maximum(1.0, np.round(true_value * undervalue)), true_value)
        log_kg = take(self.product_log_kg, product)
        weight = np.where(has_quantity, quantity, pieces) * np.exp(log_kg + 0.1 * u[3] - 0.05)
        weight = np.maximum(0.1, np.round(np.where(unit == _KG, 1.05 * weight, weight), 1))

        # Duty: the general rate, a Section 301 surcharge on Chinese goods, 0 under a preference.
        legit_claim = take(self.source_claims, source) & ~moved
        claim = np.where(scheme == _PREFERENCE, take(self.item_claim, item),
                         np.where(legit_claim, take(self.country_program, true_country), -1))
        rate = np.where(claim >= 0, 0.0, take(self.product_rate, declared) + take(self.product_301, declared) * (country == self.china))
        duty = np.round(value * rate / 100, 2)
        due_rate = np.where(legit_claim, 0.0, take(self.product_rate, product) + take(self.product_301, product) * (true_country == self.china))
        lost = np.where(violation, np.maximum(0.0, np.round(true_value * due_rate / 100 - duty, 2)), 0.0)
        export = np.where(u[4] < 0.04, take(self.hubs, (u[4] * 1e6).astype(np.int64) % len(self.hubs)), country)

        # Inspections: risky-looking lines `targeting` times as often; outcomes only for them.
        risky = violation | (claim >= 0) | (rate >= 15) | take(self.account_is_new, acct)
        w = np.where(risky, cfg.targeting, 1.0)
        chance = np.minimum(1.0, cfg.inspect_share * size / w.sum() * w)
        if cfg.disparities:  # the planted port disparities (Synthesizer.disparities)
            line_port = take(port, line_entry)
            chance = np.where((line_port == self.inspect_port) & (take(self.product_center, declared) == self.inspect_center),
                              np.minimum(1.0, DISPARITY_INSPECTION * chance), chance)
            free = (line_port == self.free_port) & (declared == self.free_product)
            rate, duty = np.where(free, 0.0, rate), np.where(free, 0.0, duty)
        inspected = rng.random(size) < chance

        columns = [
            pa.array(line_number, pa.int64()),
            _fixed_text(take(self.importer_s, acct)),
            _coded(self.port_text, take(port, line_entry)),
            pa.array(take(self.day_dates, line_day), pa.date32()),
            _fixed_text(take(self.hts_s, declared)),
            _coded(self.country_text, country),
            pa.array(value),
            pa.array(duty),
            pa.array(rate),
            pa.array(quantity, mask=~has_quantity),
            _coded(_UNIT_TEXT, unit),
            pa.array(weight),
            pc.take(self.mid_text, pa.array(mfr)),
            _coded(self.filer_text, take(broker, line_entry)),
            _coded(_ENTRY_TYPE_TEXT, take(entry_type, line_entry)),
            _coded(self.programs, np.maximum(claim, 0), claim >= 0),
            _coded(self.country_text, export),
            pa.array(inspected),
            pa.array(violation, mask=~inspected),
            pa.array(lost, mask=~inspected),
            _coded(_SCHEME_TEXT, np.maximum(scheme - 1, 0), violation),
            pa.array(lost),
        ]
        if not coded:
            columns = [c.dictionary_decode() if isinstance(c, pa.DictionaryArray) else c for c in columns]
        return _Part(broker, ranks, line_entry, columns)

    def _numbered(self, part: _Part, serial: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
        """The part's lines with entry numbers: filer code, the filer's next 7-digit
        serial (``serial`` holds it per filer and moves on), a check digit."""
        take = np.take
        broker = part.broker
        entry_serial = (take(serial, broker) + part.ranks) % 10**7
        serial += np.bincount(broker, minlength=len(serial))
        hi, lo = entry_serial // 10**4, entry_serial % 10**4
        luhn = take(self.filer_luhn, broker) + take(self.hi_luhn, hi) + take(self.lo_luhn, lo)
        number = np.empty((len(broker), 11), np.uint8)
        number[:, :3] = take(self.filer_s, broker).view(np.uint8).reshape(-1, 3)
        number[:, 3:6] = take(self.serial_hi, hi).view(np.uint8).reshape(-1, 3)
        number[:, 6:10] = take(self.serial_lo, lo).view(np.uint8).reshape(-1, 4)
        number[:, 10] = (10 - luhn % 10) % 10 + 48
        entry_number = _fixed_text(take(number.view("S11").ravel(), part.line_entry))
        return pa.record_batch([entry_number, *part.columns], schema=schema)


class Trend(NamedTuple):
    """The trade diversion ``SynthConfig(trend=True)`` injects: from ``start`` on, each
    line of HTS6 ``hts6`` from its main origin ``origin`` comes from ``to`` instead with
    probability ``share`` (declared origin only: the goods, values and MIDs stay)."""

    hts6: str
    origin: str
    to: str
    start: dt.date
    share: float


_TREND_SHARE = 0.8
_TREND_TO = ("VN", "MX", "IN", "TH", "MY", "ID", "KH")  # the first the product does not come from yet


class _Part(NamedTuple):
    """A part of a day's lines before numbering: each entry's filer and its place among
    that filer's entries of the part, each line's entry, the other columns."""

    broker: np.ndarray
    ranks: np.ndarray
    line_entry: np.ndarray
    columns: list[pa.Array]


def _luhn(chars: np.ndarray, first_doubled: bool) -> np.ndarray:
    """Luhn sums of rows of ASCII digits and letters (letters folded to 1..9: A, J, S -> 1).

    Entry numbers end in a mod-10 check digit over the 3-character filer code and the
    7-digit serial: ``(10 - sum % 10) % 10``, where the sum doubles every other
    character starting from the rightmost one. ``first_doubled`` says whether the
    row's first character is at a doubled position.
    """
    v = chars.astype(np.int64)
    v = np.where(v >= 65, (v - 65) % 9 + 1, v - 48)
    doubled = (np.arange(v.shape[1]) % 2 == 0) == first_doubled
    twice = 2 * v
    return np.where(doubled, twice - 9 * (twice > 9), v).sum(axis=1)


_BREAK: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing_entry_number": lambda r: r.update(entry_number=None),
    "bad_line_number": lambda r: r.update(line_number=0),
    "missing_importer_id": lambda r: r.update(importer_id=None),
    "bad_importer_id": lambda r: r.update(importer_id="X" * 80),
    "bad_port_code": lambda r: r.update(port_code="27O4"),
    "missing_entry_date": lambda r: r.update(entry_date=None),
    "bad_entry_date": lambda r: r.update(entry_date=dt.date(1890, 1, 1)),
    "bad_hts_code": lambda r: r.update(hts_code="84X1.20.00"),
    "bad_country_of_origin": lambda r: r.update(country_of_origin="CHN"),
    "missing_entered_value": lambda r: r.update(entered_value=None),
    "bad_entered_value": lambda r: r.update(entered_value=-abs(r["entered_value"])),
    "bad_duty_paid": lambda r: r.update(duty_paid=-1.0 - r["duty_paid"]),
    "bad_duty_rate": lambda r: r.update(duty_rate=-5.0),
    "bad_quantity": lambda r: r.update(quantity=-1.0),
    "bad_gross_weight_kg": lambda r: r.update(gross_weight_kg=-abs(r["gross_weight_kg"])),
    "bad_manufacturer_id": lambda r: r.update(manufacturer_id="MID\x01BROKEN"),
}
assert tuple(_BREAK) == DIRTY_REASONS


def _with_dirty(batch: pa.RecordBatch, after: np.ndarray, first_index: int) -> pa.RecordBatch:
    """``batch`` with a broken copy of each line ``after[i]`` inserted right after it."""
    rows = batch.take(pa.array(after)).to_pylist()
    for i, row in enumerate(rows):
        _BREAK[DIRTY_REASONS[(first_index + i) % len(DIRTY_REASONS)]](row)
        row.update(inspected=False, violation=None, revenue_recovered=None, scheme=None, duty_lost=0.0)
    broken = pa.Table.from_pylist(rows, batch.schema)
    order = np.argsort(np.r_[np.arange(batch.num_rows), after + 0.5], kind="stable")
    return pa.concat_tables([pa.Table.from_batches([batch]), broken]).take(order).combine_chunks().to_batches()[0]


# ---------------------------------------------------------------- the API


def _config(config: SynthConfig | None, params: dict[str, Any]) -> SynthConfig:
    return replace(config, **params) if config else SynthConfig(**params)


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How generated lines are written: dictionaries for the text columns that repeat (not
    the entry numbers, nearly unique per line, nor the numbers), statistics for the entry
    date only. On 2M lines pyarrow's one writer thread took 1.55 s so, 2.25 s with its
    defaults (a dictionary tried on every column, statistics everywhere). The :data:`CODED`
    columns come as dictionary arrays, but the file keeps no Arrow schema: readers see
    them as the text they are."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return {"use_dictionary": [name for name in text if name != "entry_number"], "write_statistics": ["entry_date"],
            "store_schema": False}


def generate(config: SynthConfig | None = None, batch_rows: int = 1 << 18, threads: int | None = None,
             **params: Any) -> Iterator[pa.RecordBatch]:
    """Entry lines as a stream of record batches; ``params`` override ``config`` fields."""
    return Synthesizer(_config(config, params), threads=threads).batches(batch_rows, threads)


def generate_table(config: SynthConfig | None = None, threads: int | None = None, **params: Any) -> pa.Table:
    """Entry lines in one table; ``params`` override ``config`` fields."""
    return Synthesizer(_config(config, params), threads=threads).table(threads)


@dataclass
class Written:
    """What :func:`write` wrote: line counts (contract-breaking rows included in ``lines``),
    lines per scheme, inspected lines, the time taken, and the world for its ground truth."""

    path: str
    lines: int = 0
    dirty: int = 0
    inspected: int = 0
    schemes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCHEMES, 0))
    seconds: float = 0.0
    world: Synthesizer | None = None

    def count(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.lines += batch.num_rows
        self.inspected += int(pc.sum(batch.column("inspected")).as_py() or 0)
        for row in pc.value_counts(batch.column("scheme").drop_null()).to_pylist():
            self.schemes[row["values"]] += row["counts"]


def write(
    path: str | os.PathLike[str],
    config: SynthConfig | None = None,
    batch_rows: int = 1 << 18,
    file_rows: int | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    outputs: OutputSet | None = None,
    **params: Any,
) -> Written:
    """Writes the lines to ``path`` in constant memory; ``params`` override ``config`` fields.

    The format follows the name: ``.parquet`` (one row group per batch), ``.csv`` or
    ``.csv.gz``, ``.arrow``/``.ipc``/``.feather`` (Arrow IPC file); any other name is
    a Parquet dataset: a directory of ``part-NNNNN.parquet`` files of at least
    ``file_rows`` lines, in whole batches (default: 4 batches a file), swapped in whole
    (see :func:`ceecore.io.swap_directory`); other data file names (``.pq``, ``.tsv``,
    ...) are refused. The output appears only once complete (with ``outputs``, when
    that set commits). ``progress(rows)`` is called after each batch.
    """
    started = time.perf_counter()
    target = Path(path)
    name = target.name.lower()
    if _kind(target) is not None and not name.endswith((".parquet", ".csv", ".csv.gz", ".arrow", ".ipc", ".feather")):
        raise ValueError(f"{target}: cannot write this file type: name it .parquet, .csv, .csv.gz or .arrow "
                         "(or a directory name without a suffix)")
    world = Synthesizer(_config(config, params), threads=threads)
    written = Written(os.fspath(path), dirty=world.config.dirty, world=world)
    with output_set(outputs) as into:
        _write(target, world, partial(_counted, world, written, batch_rows, threads, progress), batch_rows, file_rows,
               into)
    written.seconds = time.perf_counter() - started
    return written


def _counted(world: Synthesizer, written: Written, batch_rows: int, threads: int | None,
             progress: Callable[[int], None] | None, coded: bool) -> Iterator[pa.Table]:
    """The world's batches (``coded``: see :meth:`Synthesizer.blocks`), each counted into
    ``written`` and reported to ``progress``."""
    for table in world.tables(batch_rows, threads, coded):
        yield table
        written.count(table)
        if progress:
            progress(table.num_rows)


def _write(target: Path, world: Synthesizer, tables: Callable[[bool], Iterator[pa.Table]], batch_rows: int,
           file_rows: int | None, into: OutputSet) -> None:
    """The lines into ``target`` (its format by its name, see :func:`write`) as part of
    ``into``; ``tables(coded)`` streams them (Parquet takes them coded)."""
    name = target.name.lower()

    if name.endswith(".parquet"):
        with ParquetSink(target, world.coded_schema, into, **parquet_options(world.schema)) as sink:
            for table in tables(True):
                sink.write(table)
    elif name.endswith((".csv", ".csv.gz")):
        with atomic_path(target, into) as tmp:
            stream = pa.CompressedOutputStream(str(tmp), "gzip") if name.endswith(".gz") else pa.OSFile(str(tmp), "wb")
            with stream, pacsv.CSVWriter(stream, world.schema) as writer:
                for table in tables(False):
                    writer.write_table(table)
    elif name.endswith((".arrow", ".ipc", ".feather")):
        with atomic_path(target, into) as tmp, ipc.new_file(tmp, world.schema) as writer:
            for table in tables(False):
                writer.write_table(table)
    else:
        _write_dataset(target, world, tables(True), file_rows or 4 * batch_rows, into)


def scheme_recall(scored: pa.Table, truth: pa.Table, top_share: float = 0.05) -> dict[str, float]:
    """Per scheme, the share of its lines among the top ``top_share`` of lines by score.

    ``scored`` has ``entry_number``, ``line_number``, ``score``; ``truth`` the same keys
    and ``scheme`` (generated lines). Ties at the cut are broken by entry and line.
    """
    keys = ["entry_number", "line_number"]
    ranked = scored.select([*keys, "score"]).sort_by([("score", "descending"), ("entry_number", "ascending"),
                                                      ("line_number", "ascending")])
    top = ranked.slice(0, int(round(top_share * ranked.num_rows))).select(keys)
    labelled = truth.select([*keys, "scheme"]).filter(pc.is_valid(truth.column("scheme")))
    found = labelled.join(top.append_column("hit", pa.array(np.ones(top.num_rows, bool))), keys, join_type="left outer")
    hits = found.group_by("scheme").aggregate([("hit", "count"), ("scheme", "count")]).to_pylist()
    counts = {row["scheme"]: (row["hit_count"], row["scheme_count"]) for row in hits}
    return {name: counts[name][0] / counts[name][1] for name in SCHEMES if name in counts}


def detection_measures(scored: pa.Table, truth: pa.Table) -> tuple[dict[str, float], float, float]:
    """Recall at 5% per scheme (:func:`scheme_recall`), precision in the top 5% (ties at
    the cut broken by entry and line) and the share of the top 1% of lines whose score
    another line has too (a tie the ranking cannot order)."""
    keys = ["entry_number", "line_number"]
    ranked = scored.select([*keys, "score"]).sort_by([("score", "descending"), ("entry_number", "ascending"),
                                                      ("line_number", "ascending")])
    top = ranked.slice(0, round(0.05 * ranked.num_rows)).join(truth.select([*keys, "scheme"]), keys)
    precision = 1 - top.column("scheme").null_count / max(top.num_rows, 1)
    score = ranked.column("score").to_numpy()
    values, counts = np.unique(score, return_counts=True)
    tied = float(np.isin(score[:round(0.01 * len(score))], values[counts > 1]).mean())
    return scheme_recall(scored, truth), precision, tied


def _write_dataset(target: Path, synth: Synthesizer, batches: Iterator[pa.Table], file_rows: int,
                   into: OutputSet) -> None:
    """A directory of Parquet files, built beside the target and swapped in when ``into`` commits.

    An existing target is replaced only if it holds nothing but such part files.
    """
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} exists and is not a directory")
    if target.is_dir():
        foreign = [p.name for p in target.iterdir() if not (p.is_file() and p.name.startswith("part-")
                                                            and p.name.endswith(".parquet"))]
        if foreign:
            raise ValueError(f"{target} holds files other than a generated dataset's ({', '.join(sorted(foreign)[:3])}"
                             f"{', ...' if len(foreign) > 3 else ''}); choose another output")
    staging = into.directory(target)
    sink: ParquetSink | None = None
    try:
        part, rows = 0, 0
        for batch in batches:
            if sink is None:
                sink = ParquetSink(staging / f"part-{part:05d}.parquet", synth.coded_schema,
                                   **parquet_options(synth.schema))
            sink.write(batch)
            rows += batch.num_rows
            if rows >= file_rows:
                sink.commit()
                part, rows, sink = part + 1, 0, None
        if sink is not None:
            sink.commit()
            sink = None
    finally:
        if sink is not None:
            sink.abort()

