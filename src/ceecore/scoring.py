"""Risk scores with reasons: indicators against the industry baselines, and the Scorer.

A :class:`Model` is fitted baselines (:mod:`ceecore.baselines`) plus a
:class:`ScoringConfig`, saved as one Arrow IPC file whose schema metadata holds the
JSON description (format, package version, data range, counts, config) and whose last,
empty, batch holds a SHA-256 checksum of it all; loading it never unpickles or
evaluates anything, and checks the checksum, then every field (a model file is
untrusted input: the checksum catches accidents, the checks anything else).

Every line gets a strength in [0, 1] per indicator (:data:`INDICATORS`), its score
``1 - prod(1 - weight * strength)`` and its top reasons; the config file
``ceecore/data/scoring.toml`` documents each indicator, weight and threshold.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ceecore import __version__
from ceecore._checks import get, json_metadata, show
from ceecore._kernels._indicators import ScoringContext, score_accounts, score_lines
from ceecore._kernels._scores import combine as combine_contributions
from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook
from ceecore.baselines import BIN_WIDTH, TABLE_SCHEMA, Baselines
from ceecore.centers import CenterMap
from ceecore.fields import SCORING_COLUMNS, LineFields, line_fields
from ceecore.history import History, outcomes
from ceecore.indicators import (
    ACCOUNT_INDICATORS, INDICATOR_RAW_VALUES, INDICATOR_TALLIES, INDICATORS, RAW_VALUES, check_thresholds, lookups,
    raw_values, tallies,
)
from ceecore.io import BATCH_ROWS, atomic_path, check_batch
from ceecore.learn import Learned
from ceecore.privacy import PRIVATE_COLUMNS, PSEUDONYM_KEY, Pseudonymiser, check_pseudonyms
from ceecore.schema import REJECT_REASONS, ColumnMapping, plain_rows, read_toml

__all__ = ["ACCOUNT_INDICATORS", "INDICATOR_RAW_VALUES", "INDICATOR_TALLIES", "INDICATORS", "LINES_PARQUET_OPTIONS",
           "Model", "Scorer", "ScoringConfig", "lines_schema", "load_model",
           "scored_schema", "score_intake"]

# A line's own numbers that learned trees also read.
LINE_NUMBERS: tuple[str, ...] = ("log_value", "log_unit_value", "duty_rate", "per_kg")
# 3: the checksum, and every field checked on load; 4: the classification tallies by port;
# 5: unit_value_low's thresholds for sustained and scattered shortfalls; 6: new_importer's
# thresholds for a line's value against its product's mean line; 7: port_unit_value_low (the
# port_uv tally, its thresholds); 8: port_spread's thresholds for the evidence of a spread
# given the account's lines; 9: classification_price (its thresholds; cls_group_max keeps the
# heading's dearest HTS number with its rate), the acct tally's line values, new_importer's
# value thresholds as a z, unit_value_low's sustained thresholds in the new standard error.
MODEL_FORMAT = "ceecore.model/9"
# The largest model file loaded (checked before reading it): a model fitted on 2M
# generated lines takes 38 MB, 42 MB with learned trees.
MAX_MODEL_BYTES = 4 << 30
# The most JSON metadata a model may hold (parsed whole): trees at their bounds
# (``ceecore.learn``) take about 150 MB, those of 2M generated lines 0.4 MB.
MAX_METADATA_BYTES = 256 << 20
_CHECKSUM = b"ceecore.sha256"  # the custom metadata of a model file's last batch
# Columns of the input a scored line keeps, to find it again.
ID_COLUMNS: tuple[str, ...] = ("entry_number", "line_number", "importer_id", "entry_date", "port_code", "hts_code",
                               "country_of_origin")


# Bounds of the config's counts: past them a job would only exhaust memory.
_OUTPUT_COUNT_LIMITS = {"reasons": 10, "account_top_lines": 10_000, "worklist": 1_000_000}


def _default_config_doc() -> dict[str, Any]:
    return tomllib.loads((resources.files("ceecore") / "data" / "scoring.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ScoringConfig:
    """Weights and thresholds of the indicators (see ``ceecore/data/scoring.toml``)."""

    weights: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    min_group_lines: int = 30
    reasons: int = 3
    account_top_lines: int = 5
    worklist: int = 50
    exploration_share: float = 0.1
    exploration_seed: int = 0
    facilitation: dict[str, float] = field(default_factory=dict)

    @classmethod
    def default(cls) -> ScoringConfig:
        return cls.from_doc({})

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ScoringConfig:
        """A config file; what it leaves out keeps its default."""
        return cls.from_doc(read_toml(path, "scoring config"), os.fspath(path))

    @classmethod
    def from_doc(cls, doc: dict[str, Any], where: str = "scoring config") -> ScoringConfig:
        base = _default_config_doc()
        unknown = set(doc) - set(base)
        if unknown:
            raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}; known: {sorted(base)}")
        merged = {}
        for section, values in base.items():
            given = doc.get(section, {})
            if not isinstance(given, dict):
                raise ValueError(f"{where}: [{section}] must be a table of keys")
            extra = set(given) - set(values)
            if extra:
                raise ValueError(f"{where}: [{section}] has unknown key(s) {sorted(extra)}")
            for key, value in given.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise ValueError(f"{where}: [{section}] {key} must be a finite number, got {show(value)}")
            merged[section] = {**values, **given}
        weights = {k: float(v) for k, v in merged["weights"].items()}
        bad = [k for k, v in weights.items() if not 0 <= v <= 1]
        if bad:
            raise ValueError(f"{where}: weights must be in [0, 1]: {bad}")
        if tuple(merged["weights"]) != INDICATORS:
            raise ValueError(f"{where}: [weights] must name the indicators {INDICATORS}")
        check_thresholds(merged["thresholds"], where)
        _check_threshold_ranges(merged["thresholds"], where)
        out = merged["output"]
        counts = {"norms": {"min_group_lines": 2**31 - 1}, "output": _OUTPUT_COUNT_LIMITS}
        for section, limits in counts.items():
            for key, limit in limits.items():
                value = merged[section][key]
                if not (isinstance(value, int) and 1 <= value <= limit):
                    raise ValueError(f"{where}: [{section}] {key} must be a whole number from 1 to {limit:,}, "
                                     f"got {show(value)}")
        if not (isinstance(out["exploration_seed"], int) and 0 <= out["exploration_seed"] < 2**63):
            raise ValueError(f"{where}: [output] exploration_seed must be a whole number from 0 to 2**63 - 1")
        if not 0 <= out["exploration_share"] <= 1:
            raise ValueError(f"{where}: [output] exploration_share must be from 0 to 1")
        return cls(weights=weights, thresholds={k: float(v) for k, v in merged["thresholds"].items()},
                   min_group_lines=merged["norms"]["min_group_lines"], reasons=out["reasons"],
                   account_top_lines=out["account_top_lines"], worklist=out["worklist"],
                   exploration_share=float(out["exploration_share"]), exploration_seed=out["exploration_seed"],
                   facilitation=_facilitation_rule(merged["facilitation"], where))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def enabled(self) -> tuple[str, ...]:
        """The indicators that count: weight 0 turns one off (not computed, its baselines not built)."""
        return tuple(name for name in INDICATORS if self.weights[name] > 0)

    @property
    def tallies(self) -> tuple[str, ...]:
        """The baseline tallies the enabled indicators read."""
        return tallies(self.enabled)


def _facilitation_rule(rule: dict[str, Any], where: str) -> dict[str, float]:
    """The [facilitation] table: days and lines are counts >= 0, the quantile and the line
    score shares from 0 to 1."""
    shares = ("score_quantile", "low_score", "max_line_score", "open_strength")
    bad = [k for k, v in rule.items() if v < 0 or (k in shares and v > 1)]
    if bad:
        raise ValueError(f"{where}: [facilitation] out of range (below 0, or a share above 1): {bad}")
    return {k: float(v) for k, v in rule.items()}


def _check_threshold_ranges(thresholds: dict[str, float], where: str) -> None:
    """Thresholds are >= 0, quantiles at most 1, and the two ends of a ramp differ (a
    strength ramps from ``x_from`` to ``x_to``)."""
    bad = [k for k, v in thresholds.items() if v < 0 or (k.endswith("_quantile") and v > 1)
           or (k.endswith("_from") and thresholds.get(k[:-5] + "_to") == v)]
    if bad:
        raise ValueError(f"{where}: thresholds out of range (below 0, a quantile above 1 or a ramp from a value "
                         f"to itself): {bad}")


def _rows(table: pa.Table, mask: pa.Array) -> pa.Table:
    """The rows of a model table under ``mask``, their tally names in a dictionary of their own."""
    part = table.filter(mask)
    return pa.table({"tally": part.column("tally").cast(pa.string()).combine_chunks().dictionary_encode(),
                     **{c: part.column(c) for c in ("field", "key", "value")}}, metadata=table.schema.metadata)


class Model:
    """Fitted baselines, the lookups scoring needs, and the config. Read-only once built,
    so any number of threads may score with one model."""

    def __init__(self, baselines: Baselines, config: ScoringConfig | None = None,
                 meta: dict[str, Any] | None = None, history: History | None = None,
                 learned: Learned | None = None) -> None:
        self.baselines = baselines
        self.config = config or ScoringConfig.default()
        self.meta = dict(meta or {})
        self.history = history
        # The canonical (and extra) columns scoring reads beyond consolidation's.
        self.input_columns = SCORING_COLUMNS + (("filer_code", *history.extra) if history is not None else ())
        t = baselines.tallies
        self.enabled = frozenset(self.config.enabled)
        self._learn(learned)
        missing = [f"{tally} (for {name})" for name in self.enabled for tally in INDICATOR_TALLIES[name]
                   if tally not in t]
        if missing:
            raise ValueError(f"these baselines were fitted without {', '.join(missing)}: refit with this config")
        span = baselines.day_range()
        self.first_day = span[0] if span else 0
        # What the enabled indicators read, bound once for the compiled kernel.
        config = self.config
        self.lookups = lookups(config.enabled, t, config.thresholds)
        self.context = ScoringContext(self.lookups, config.thresholds, config.weights, config.min_group_lines,
                                      BIN_WIDTH, self.first_day)

    def _learn(self, learned: Learned | None) -> None:
        """Takes ``learned`` trees (None: none), which must read this model's features."""
        if learned is not None and (self.history is None or learned.trees.features != tuple(self.feature_names())):
            raise ValueError("the learned trees do not match this model's features")
        self.learned = learned
        kinds = self.history.kinds if learned is not None else ()
        self.lines_schema = lines_schema(self.config.enabled, kinds)
        self.scored_schema = scored_schema(self.config.enabled, kinds)

    def with_learned(self, learned: Learned) -> Model:
        """This model with ``learned`` trees: the same baselines, history and lookups (shared,
        read-only: not built again)."""
        model = copy.copy(self)
        model.meta = dict(self.meta)
        model._learn(learned)
        return model

    # ------------------------------------------------------------ artifact

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the model atomically as one Arrow IPC file (no pickle): the baselines' and
        the history's tallies as rows, the rest (config, learned trees) as JSON metadata,
        then an empty batch holding the checksum of all that (see :func:`_checksum`)."""
        meta = {**self.meta, "format": MODEL_FORMAT, "version": __version__, "config": self.config.to_dict()}
        if self.learned is not None:
            meta["learned"] = self.learned.to_dict()
        names = [*self.baselines.tallies, *(["history"] if self.history is not None else [])]
        metadata = {**self.baselines.metadata(), **(self.history.metadata() if self.history is not None else {}),
                    b"ceecore.model": json.dumps(meta).encode()}
        options = ipc.IpcWriteOptions(compression="zstd")  # half the size, no slower here
        checksum = _checksum(metadata, [])
        # Tally by tally: the whole table never sits in memory beside the state.
        with atomic_path(path) as tmp, ipc.new_file(tmp, TABLE_SCHEMA.with_metadata(metadata),
                                                    options=options) as writer:
            history = self.history.to_arrow(names).cast(TABLE_SCHEMA).to_batches() if self.history is not None else []
            for batch in itertools.chain(self.baselines.batches(names), history):  # one at a time
                writer.write_batch(batch)
                _checksum(None, [batch], checksum)
            # Empty, with the same tally dictionary (an IPC file has one per column).
            writer.write_batch(batch.slice(0, 0), custom_metadata={_CHECKSUM: checksum.hexdigest().encode()})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Reads a model written by :meth:`save`; one clear ValueError for anything else:
        a file too big (:data:`MAX_MODEL_BYTES`), not Arrow, of another format, whose
        checksum does not match, or any field out of form or range."""
        where = os.fspath(path)
        try:
            size = os.stat(where).st_size
        except OSError as exc:
            raise ValueError(f"{where}: cannot read the model ({exc.strerror or exc})") from exc
        if size > MAX_MODEL_BYTES:
            raise ValueError(f"{where}: not a ceecore model ({size:,} bytes, more than the {MAX_MODEL_BYTES:,} a model "
                             "file may take)")
        try:
            with pa.memory_map(where) as source:
                reader = ipc.open_file(source)
                schema = reader.schema
                read = [reader.get_batch_with_custom_metadata(i) for i in range(reader.num_record_batches)]
            for batch, _ in read:
                batch.validate(full=True)
        except (OSError, MemoryError, pa.ArrowException) as exc:
            raise ValueError(f"{where}: not a ceecore model (cannot read it as an Arrow IPC file: {exc})") from exc
        size = sum(len(key) + len(value) for key, value in (schema.metadata or {}).items())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"{where}: not a ceecore model ({size:,} bytes of metadata, more than the "
                             f"{MAX_METADATA_BYTES:,} a model may hold)")
        try:
            meta = json_metadata(schema.metadata, b"ceecore.model")
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") is None:
            raise ValueError(f"{where}: not a ceecore model (no ceecore.model metadata)")
        if meta["format"] != MODEL_FORMAT:
            raise ValueError(f"{where}: model format {str(meta['format'])[:40]!r} is not {MODEL_FORMAT!r}; refit it "
                             f"with ceecore {__version__}")
        if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in TABLE_SCHEMA] \
                or any(batch.column(c).null_count for batch, _ in read for c in range(batch.num_columns)):
            raise ValueError(f"{where}: corrupt ceecore model: its rows must be the non-null columns "
                             f"{TABLE_SCHEMA.remove_metadata()}")
        batches = [batch for batch, _ in read[:-1]]
        trailer, sealed = read[-1] if read else (None, None)
        if trailer is None or trailer.num_rows or sealed is None or _CHECKSUM not in sealed \
                or sealed[_CHECKSUM] != _checksum(schema.metadata, batches).hexdigest().encode():
            raise ValueError(f"{where}: corrupt ceecore model: checksum mismatch (the file changed after it was "
                             "written: fit it again, or restore it)")
        try:
            return cls._from_checked(pa.Table.from_batches(batches, schema), meta)
        except (KeyError, TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            raise ValueError(f"{where}: corrupt ceecore model: {exc}") from exc

    @classmethod
    def _from_checked(cls, table: pa.Table, meta: dict[str, Any]) -> Model:
        """The model of a file's rows and metadata whose checksum matched: still untrusted
        (a checksum catches accidents, anyone can recompute it), so every field is checked."""
        tally = table.column("tally").combine_chunks()
        names = tally.dictionary.to_pylist()
        history = None
        if "history" in names:  # the outcome history's rows, beside the baselines' (learned models)
            mine = tally.indices.to_numpy(zero_copy_only=False) == names.index("history")
            history = History.from_arrow(_rows(table, pa.array(mine)))
        baselines = Baselines.from_arrow(table, others=("history",))
        where = "model metadata"
        get(meta, "version", "text", where)
        lines = get(meta, "lines", "int", where, low=0)
        if lines != baselines.lines:
            raise ValueError(f"{where}: 'lines' is {lines} but the baselines hold {baselines.lines} lines")
        for key in ("first_date", "last_date"):
            get(meta, key, "text", where, optional=True)
        key = get(meta, PSEUDONYM_KEY, "text", where, default=None, optional=True)
        if key is not None and not (len(key) == 16 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"{where}: '{PSEUDONYM_KEY}' must be a key fingerprint (16 hex digits)")
        learned = get(meta, "learned", "object", where, default=None, optional=True)
        learned = Learned.from_dict(learned) if learned else None
        if (learned is not None) != (history is not None and len(history.tally) > 0):
            raise ValueError("a model holds outcome history (rows) exactly when it holds learned trees")
        given = get(meta, "config", "object", where)
        config_where = f"{where}: config"
        config = ScoringConfig.from_doc({
            "weights": get(given, "weights", "object", config_where),
            "thresholds": get(given, "thresholds", "object", config_where),
            "norms": {"min_group_lines": get(given, "min_group_lines", "int", config_where)},
            "output": {k: given[k] for k in ("reasons", "account_top_lines", "worklist", "exploration_share",
                                             "exploration_seed") if k in given},
            "facilitation": get(given, "facilitation", "object", config_where, default={}),
        }, config_where)
        mine = config.to_dict()
        # (a facilitation rule saved before a key was added takes its default)
        mine["facilitation"] = {k: v for k, v in mine["facilitation"].items() if k in given.get("facilitation", {})}
        differ = sorted(k for k in given if k not in mine or given[k] != mine[k])
        if differ:
            raise ValueError(f"{config_where}: {differ} are not what a saved config holds (unknown, or out of range)")
        return cls(baselines, config, meta, history, learned)

    # ------------------------------------------------------------ indicators

    def indicators(self, f: LineFields) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Strength per line and indicator (an (n, len(INDICATORS)) matrix), and the raw
        values behind them; indicators turned off stay 0, their raw values NaN."""
        strengths, raw = score_lines(self.context, *_kernel_fields(f))
        return strengths, {name: raw[:, i] for i, name in enumerate(RAW_VALUES)}

    def score_lines(self, f: LineFields) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(strengths, raw, score, top, fired)`` of the lines in one compiled pass: the
        indicators (as :meth:`indicators`, raw values by :data:`RAW_VALUES` column), the
        combined score, and per line its reasons (``top``, indicator columns) of which
        the first ``fired`` contributed."""
        return score_lines(self.context, *_kernel_fields(f), self.config.reasons)

    def feature_names(self) -> list[str]:
        """What learned trees read per line: the enabled indicators, their raw values, the
        line's own numbers (:data:`LINE_NUMBERS`) and the history's rates."""
        names = [*self.config.enabled, *raw_values(self.config.enabled), *LINE_NUMBERS]
        return names + (self.history.feature_names() if self.history is not None else [])

    def features(self, intake: Any, f: LineFields, fold: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """``(X, strengths, raw, history)`` of the lines: X has :meth:`feature_names` columns;
        with ``fold`` the history is out of fold (learning from these very lines)."""
        strengths, raw = self.indicators(f)
        own = [np.log1p(f.value_cents / 100.0), f.log_uv, f.rate_bp / 1e4, f.basis.astype(float)]
        history = self.history.features(self.history.keys(intake, f), fold) if self.history is not None \
            else np.zeros((len(f), 0))
        X = np.column_stack([strengths[:, [INDICATORS.index(n) for n in self.config.enabled]],
                             *[raw[n] for n in raw_values(self.config.enabled)], *own, history]) \
            if len(f) else np.zeros((0, len(self.feature_names())))
        return X, strengths, raw, history

    def account_strengths(self, importers: np.ndarray) -> np.ndarray:
        """Strengths of :data:`ACCOUNT_INDICATORS` per importer hash."""
        strengths, _ = score_accounts(self.context, np.ascontiguousarray(importers, np.uint64))
        return strengths[:, [INDICATORS.index(name) for name in ACCOUNT_INDICATORS]]

    def combine_account(self, strengths: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
        """Account-level scores and reasons from :meth:`account_strengths`."""
        score, top, fired = self.combine(strengths, ACCOUNT_INDICATORS)
        return score, reason_lists(top, fired, ACCOUNT_INDICATORS).to_pylist()

    def combine(self, strengths: np.ndarray, names: tuple[str, ...] = INDICATORS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores and reasons from the strengths of the indicators ``names``.

        Returns ``(score, top, fired)``: ``top[i]`` lists row i's indicators by falling
        contribution (``weight * strength``), and ``fired[i]`` how many of the first
        :attr:`ScoringConfig.reasons` contributed at all.
        """
        weights = np.array([self.config.weights[name] for name in names])
        return combine_contributions(np.ascontiguousarray(strengths * weights, np.float64), self.config.reasons)


def _checksum(metadata: dict[bytes, bytes] | None, batches: Iterable[pa.RecordBatch], into: Any = None) -> Any:
    """A SHA-256 of a model file's content, continuing ``into`` if given: its schema
    ``metadata`` (every key and value, length-prefixed, in key order), then each batch
    of rows (no nulls): its length, tally names and each column's values. Over values,
    not the file's bytes, so compression does not change it."""
    checksum = into if into is not None else hashlib.sha256()
    for key, value in sorted((metadata or {}).items()):
        checksum.update(b"%d:%b%d:%b" % (len(key), key, len(value), value))
    for batch in batches:
        tally = batch.column(0)
        checksum.update(b"%d:%b" % (batch.num_rows, json.dumps(tally.dictionary.to_pylist()).encode()))
        for column in (tally.indices, *batch.columns[1:]):
            checksum.update(np.ascontiguousarray(column.to_numpy(zero_copy_only=False)))
    return checksum


def _kernel_fields(f: LineFields) -> tuple[np.ndarray, ...]:
    """The parsed fields the scoring kernel reads, in its argument order."""
    return (f.importer, f.maker, f.day, f.country, f.port, f.rate_bp, f.hts10, f.hts6, f.hts4, f.spi, f.log_uv,
            f.basis, f.value_cents)


def top_contributors(contribution: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``k`` largest contributions (ties: the lower column)
    and how many of them are above 0."""
    _, top, fired = combine_contributions(np.ascontiguousarray(contribution, np.float64), k)
    return top, fired


def reason_lists(top: np.ndarray, fired: np.ndarray, names: tuple[str, ...], rows: np.ndarray | None = None,
                 length: int | None = None) -> pa.ListArray:
    """Reasons as an Arrow list of names per row: the first ``fired[i]`` of ``top[i]``.

    With ``rows``, the lists go to those rows of ``length`` and the other rows are null.
    """
    if rows is None:
        rows, length = np.arange(len(fired)), len(fired)
    counts = np.zeros(length, np.int32)
    counts[rows] = fired
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
    keep = np.arange(top.shape[1])[None, :] < fired[:, None]
    values = pc.take(pa.array(list(names), pa.string()), pa.array(top[keep], pa.int64()))
    valid = np.zeros(length, bool)
    valid[rows] = True
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~valid))


_ID_TYPES = {"line_number": pa.int64(), "entry_date": pa.date32()}
_OUTCOME_TYPES = {"inspected": pa.bool_(), "violation": pa.bool_(), "revenue_recovered": pa.float64()}


def scoring_input_types(history_keys: tuple[str, ...] | None = None) -> dict[str, pa.DataType]:
    """The canonical columns scoring reads beside the kernel's parse, in the types the
    scored lines have them: the ids and the outcomes, and, for a model that learns
    from outcomes (``history_keys`` given), the text its histories are keyed on."""
    typed = {name: _ID_TYPES.get(name, pa.string()) for name in ID_COLUMNS} | _OUTCOME_TYPES
    if history_keys is not None:
        typed |= {name: pa.large_string() for name in ("manufacturer_id", "filer_code", *history_keys)}
    return typed


def lines_schema(indicators: tuple[str, ...] = INDICATORS, history: tuple[str, ...] = ()) -> pa.Schema:
    """A scored line: its identity, its outcome where known (null if the input had none),
    its Center, score and reasons, the strength of each of ``indicators`` (those turned
    on) and the raw values behind them (null where not computed); for a model that
    learned from outcomes, the smoothed violation rate of each ``history`` key."""
    return pa.schema(
        list(scoring_input_types().items())
        + [("center", pa.string()), ("score", pa.float64()), ("reasons", pa.list_(pa.string()))]
        + [(name, pa.float32()) for name in indicators]
        + [(name, pa.float32()) for name in raw_values(indicators)]
        + [(f"history:{kind}", pa.float32()) for kind in history]
    )


def scored_schema(indicators: tuple[str, ...] = INDICATORS, history: tuple[str, ...] = ()) -> pa.Schema:
    """What :meth:`Scorer.score` returns: every input row, with its reject reason (null if accepted)."""
    return lines_schema(indicators, history).insert(len(ID_COLUMNS), pa.field("reject_reason", pa.string()))


# How scored lines are written: dictionaries for the text columns that repeat (not the
# entry numbers, nearly unique per line, nor the numbers), statistics for what readers
# filter on (importer, date, Center, score). Measured on 5M scored lines, pyarrow's one
# writer thread took 2.7 s with dictionaries and statistics for every id, 2.2 s so.
LINES_PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["importer_id", "port_code", "hts_code", "country_of_origin", "center"],
    "write_statistics": ["importer_id", "entry_date", "center", "score"],
}


class Scorer:
    """Scores record batches against a model: what a service embeds.

    ``score`` takes any Arrow producer (a record batch, a table, a polars frame) with
    canonical columns (or ``mapping``'s names) and returns one record batch with a row
    per input row: its identifying columns, ``reject_reason`` (null when it passed the
    data contract), its Center, ``score`` and ``reasons`` (null when rejected), each
    indicator's strength and the raw values behind them. The heavy work runs in numpy
    and compiled kernels that release the GIL; the scorer holds no mutable state, so
    several threads may call ``score`` at once. With ``pseudonyms`` (the key the model
    was fitted with), private ids are tokens before anything reads them.
    """

    def __init__(self, model: Model, mapping: ColumnMapping | None = None, centers: CenterMap | None = None,
                 pseudonyms: Pseudonymiser | None = None) -> None:
        check_pseudonyms(model.meta, pseudonyms)
        self.model = model
        self.mapping = mapping or ColumnMapping()
        self.centers = centers or CenterMap.default()
        self.pseudonyms = pseudonyms
        self._local = threading.local()  # each thread's parser (no state between calls, only buffers)

    def score(self, data: Any, source: str = "<batch>") -> pa.RecordBatch:
        table = data if isinstance(data, pa.RecordBatch) else pa.table(data)
        check_batch(table, source, columns=self.mapping.sources_of(CONSOLIDATION_COLUMNS + self.model.input_columns))
        if table.num_rows == 0:
            batches = [pa.RecordBatch.from_pylist([], schema=table.schema)]
        else:
            batches = pa.table(table).to_batches(max_chunksize=BATCH_ROWS)
        scored = [self._score_batch(b, source) for b in batches if b.num_rows or len(batches) == 1]
        return scored[0] if len(scored) == 1 else pa.Table.from_batches(scored).combine_chunks().to_batches()[0]

    def _score_batch(self, batch: pa.RecordBatch, source: str) -> pa.RecordBatch:
        parser = getattr(self._local, "parser", None)
        if parser is None:  # made once per thread: a parse folds nothing, so it can be reused
            parser = self._local.parser = AccountBook(self.centers, threads=1)
        if self.pseudonyms is not None:
            batch = self.pseudonyms.batch(batch, tuple(self.mapping.source_of(c) for c in PRIVATE_COLUMNS))
        intake = parser.parse(batch, self.mapping, source, self.model.input_columns, checked=True)  # score checked it
        return score_intake(self.model, intake, self.centers)


def score_intake(model: Model, intake: Any, centers: CenterMap, out_of_fold: bool = False) -> pa.RecordBatch:
    """The scored rows of one ingested batch (see :class:`Scorer`).

    ``out_of_fold``: these are lines the model learned from, so each line's history
    leaves out its entry's fold, as in training: no entry's own outcomes raise its scores.
    """
    f = line_fields(intake)
    n = len(intake.codes)
    if model.learned is None:
        strengths, raw_matrix, score, top, fired = model.score_lines(f)
        raw = {name: raw_matrix[:, i] for i, name in enumerate(RAW_VALUES)}
        reasons, history = INDICATORS, np.zeros((len(f), 0))
    else:  # the trees' probability; reasons: the features that raised it most
        fold = None
        if out_of_fold:  # every line gets its entry's fold, as in training: no entry sees its own outcomes
            fold = outcomes(intake, f, model.learned.label, model.learned.revenue).fold
        X, strengths, raw, history = model.features(intake, f, fold)
        log_odds, parts = model.learned.trees.raw(X, contributions=True)
        score = 1.0 / (1.0 + np.exp(-log_odds))
        top, fired = top_contributors(np.maximum(parts, 0.0), model.config.reasons)
        reasons = model.learned.trees.features
    canonical = intake.canonical
    columns: dict[str, pa.Array] = {}
    for name in ID_COLUMNS:
        kind = _ID_TYPES.get(name, pa.string())
        if name not in canonical.schema.names:
            columns[name] = pa.nulls(n, kind)
            continue
        columns[name] = plain_rows(canonical.column(name), kind=kind)
    for name, kind in _OUTCOME_TYPES.items():
        columns[name] = canonical.column(name) if name in canonical.schema.names else pa.nulls(n, kind)
    accepted = intake.codes == 0
    rejected = ~accepted
    columns["reject_reason"] = pc.take(pa.array(REJECT_REASONS), pa.array(intake.codes.astype(np.int32),
                                                                          mask=accepted))
    center = np.full(n, -1, np.int32)
    center[f.rows] = f.center
    columns["center"] = pc.take(pa.array(centers.codes, pa.string()), pa.array(center, mask=center < 0))

    every = len(f) == n  # no rejects: the lines' values are the rows' values

    def spread(values: np.ndarray, dtype: Any, nan_is_null: bool = False) -> pa.Array:
        """The lines' values at their rows: null for rejected rows and, with ``nan_is_null``,
        for values not computed (NaN), which readers would otherwise average in."""
        if not every:
            out = np.zeros(n, dtype=values.dtype)
            out[f.rows] = values
            values = out
        missing = rejected | np.isnan(values) if nan_is_null else rejected
        return pa.array(values, dtype, mask=missing if missing.any() else None)

    columns["score"] = spread(score, pa.float64())
    columns["reasons"] = reason_lists(top, fired, reasons, f.rows, n)
    for name in model.config.enabled:
        columns[name] = spread(strengths[:, INDICATORS.index(name)].astype(np.float32), pa.float32())
    for name in raw_values(model.config.enabled):
        columns[name] = spread(raw[name].astype(np.float32), pa.float32(), nan_is_null=True)
    for i, kind in enumerate(model.history.kinds if model.learned is not None else ()):
        columns[f"history:{kind}"] = spread(history[:, 3 * i].astype(np.float32), pa.float32())
    return pa.RecordBatch.from_pydict(columns, schema=model.scored_schema)


def load_model(path: str | os.PathLike[str], mapping: ColumnMapping | None = None,
               centers: CenterMap | None = None, pseudonyms: Pseudonymiser | None = None) -> Scorer:
    """A :class:`Scorer` for the model saved at ``path``."""
    return Scorer(Model.load(Path(path)), mapping, centers, pseudonyms)
