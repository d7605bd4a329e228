"""Risk scores with reasons: indicators against the industry baselines, and the Scorer.

A :class:`Model` is fitted baselines (:mod:`ceecore.baselines`) plus a
:class:`ScoringConfig`, saved as one Arrow IPC file whose schema metadata holds the
JSON description (format, package version, data range, counts, config); loading it
never unpickles or evaluates anything.

Every line gets a strength in [0, 1] per indicator (:data:`INDICATORS`), its score
``1 - prod(1 - weight * strength)`` and its top reasons; the config file
``ceecore/data/scoring.toml`` documents each indicator, weight and threshold.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ceecore import __version__
from ceecore._kernels._scores import combine as combine_contributions
from ceecore._kernels._tally import Tally
from ceecore.accounts import AccountBook
from ceecore.baselines import (
    ANY_ORIGIN, BIN_WIDTH, MOMENT_LEVELS, TALLIES, Baselines, Norms, ap_day_key, ap_key, claim_key, cls_group_key,
    cls_port_key, duty_key, earliest_key, level_codes, month_key, origin_key, roll_up, uv_group,
)
from ceecore.centers import CenterMap
from ceecore.fields import SCORING_COLUMNS, LineFields, line_fields
from ceecore.history import History, outcomes
from ceecore.io import BATCH_ROWS, atomic_path
from ceecore.learn import Learned
from ceecore.schema import REJECT_REASONS, ColumnMapping, plain_rows, read_toml

__all__ = ["ACCOUNT_INDICATORS", "INDICATOR_RAW_VALUES", "INDICATOR_TALLIES", "INDICATORS", "LINES_PARQUET_OPTIONS",
           "Model", "Scorer", "ScoringConfig", "lines_schema", "load_model",
           "scored_schema", "score_intake"]

INDICATORS: tuple[str, ...] = (
    "unit_value_low", "unit_value_outlier", "duty_below_peers", "preference_rare", "origin_rare",
    "origin_switch", "classification_disparity", "port_spread", "new_importer", "volume_surge",
)
ACCOUNT_INDICATORS: tuple[str, ...] = ("port_spread", "new_importer")
# The baselines each indicator reads (every model also keeps "acct": its accounts' lines and dates).
INDICATOR_TALLIES: dict[str, tuple[str, ...]] = {
    "unit_value_low": ("uv_hist", "uv_moments", "ap_uv"),
    "unit_value_outlier": ("uv_hist",),
    "duty_below_peers": ("duty",),
    "preference_rare": ("claims",),
    "origin_rare": ("origin_lines",),
    "origin_switch": ("ap_days", "ap_earliest"),
    "classification_disparity": ("cls_group_max", "cls_port_max", "cls_hts"),
    "port_spread": ("acct_port",),
    "new_importer": ("acct",),
    "volume_surge": ("acct_month",),
}
_COL = {name: i for i, name in enumerate(INDICATORS)}
# A line's own numbers that learned trees also read.
LINE_NUMBERS: tuple[str, ...] = ("log_value", "log_unit_value", "duty_rate", "per_kg")
MODEL_FORMAT = "ceecore.model/2"
# Columns of the input a scored line keeps, to find it again.
ID_COLUMNS: tuple[str, ...] = ("entry_number", "line_number", "importer_id", "entry_date", "port_code", "hts_code",
                               "country_of_origin")


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
            extra = set(given) - set(values)
            if extra:
                raise ValueError(f"{where}: [{section}] has unknown key(s) {sorted(extra)}")
            for key, value in given.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
                    raise ValueError(f"{where}: [{section}] {key} must be a number, got {value!r}")
            merged[section] = {**values, **given}
        weights = {k: float(v) for k, v in merged["weights"].items()}
        bad = [k for k, v in weights.items() if not 0 <= v <= 1]
        if bad:
            raise ValueError(f"{where}: weights must be in [0, 1]: {bad}")
        out = merged["output"]
        if not (isinstance(out["exploration_seed"], int) and 0 <= out["exploration_seed"] < 2**63):
            raise ValueError(f"{where}: [output] exploration_seed must be a whole number from 0 to 2**63 - 1")
        return cls(weights=weights, thresholds={k: float(v) for k, v in merged["thresholds"].items()},
                   min_group_lines=max(1, int(merged["norms"]["min_group_lines"])), reasons=max(1, int(out["reasons"])),
                   account_top_lines=max(1, int(out["account_top_lines"])), worklist=max(1, int(out["worklist"])),
                   exploration_share=min(1.0, max(0.0, float(out["exploration_share"]))),
                   exploration_seed=int(out["exploration_seed"]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def enabled(self) -> tuple[str, ...]:
        """The indicators that count: weight 0 turns one off (not computed, its baselines not built)."""
        return tuple(name for name in INDICATORS if self.weights[name] > 0)

    @property
    def tallies(self) -> tuple[str, ...]:
        """The baseline tallies the enabled indicators read."""
        return tuple(dict.fromkeys(["acct"] + [t for name in self.enabled for t in INDICATOR_TALLIES[name]]))


def _ramp(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 at ``start``, 1 at ``end``, linear between (either direction); NaN gives 0."""
    with np.errstate(invalid="ignore"):
        out = np.clip((x - start) / (end - start), 0.0, 1.0)
    return np.nan_to_num(out, nan=0.0)


def _rows(table: pa.Table, mask: pa.Array) -> pa.Table:
    """The rows of a model table under ``mask``, their tally names in a dictionary of their own."""
    part = table.filter(mask)
    return pa.table({"tally": part.column("tally").cast(pa.string()).combine_chunks().dictionary_encode(),
                     **{c: part.column(c) for c in ("field", "key", "value")}}, metadata=table.schema.metadata)


def _effective_ports(acct_port: Tally) -> Tally:
    """Per account: its effective number of ports (exp of the entropy of its lines by port), x 1000."""
    _, port_fields = acct_port.items()
    lines, owners = port_fields[:, 0], port_fields[:, 1].view(np.uint64)
    order = np.argsort(owners, kind="stable")
    owners, lines = owners[order], lines[order].astype(float)
    accounts, start = np.unique(owners, return_index=True)
    total = np.add.reduceat(lines, start) if len(lines) else np.zeros(0)
    p = lines / np.repeat(total, np.diff(np.r_[start, len(lines)]))
    entropy = -np.add.reduceat(p * np.log(p), start) if len(lines) else np.zeros(0)
    out = Tally("max")
    out.add(accounts, np.round(np.exp(entropy) * 1000).astype(np.int64))
    return out


def _origin_prices(uv_moments: Tally) -> np.ndarray:
    """Each origin's price index, per (origin * 2 + basis): how far its lines' mean log unit
    value for an HTS number sits above that of the other origins, averaged over HTS
    numbers (weighted by the smaller side, so that no product dominated by one origin
    sets it)."""
    keys, moments = uv_moments.items()
    level0 = (keys >> np.uint64(50)) == 0
    keys, lines, sums = keys[level0], moments[level0, 0], moments[level0, 1]
    basis = ((keys >> np.uint64(49)) & np.uint64(1)).astype(np.int64)
    hts = ((keys >> np.uint64(10)) & np.uint64((1 << 38) - 1)).astype(np.int64)
    origin = (keys & np.uint64(1023)).astype(np.int64)
    whole_moments = uv_moments.get(uv_group(1, basis, hts, np.full(len(keys), ANY_ORIGIN)))
    rest = whole_moments[:, 0] - lines
    gap = (sums / np.maximum(lines, 1) - (whole_moments[:, 1] - sums) / np.maximum(rest, 1)) / 1e6
    slot = origin * 2 + basis
    weight = np.minimum(lines, rest).astype(float)
    return np.bincount(slot, weight * gap, minlength=2048) / np.maximum(np.bincount(slot, weight, minlength=2048), 1)


def _typical_months(acct_month: Tally) -> Tally:
    """Per account: the median of its lines over the months it filed in (x 1000), and how many months."""
    _, month_fields = acct_month.items()
    owner, lines = month_fields[:, 1].view(np.uint64), month_fields[:, 0]
    order = np.lexsort((lines, owner))
    owner, lines = owner[order], lines[order]
    accounts, start, months = np.unique(owner, return_index=True, return_counts=True)
    median = (lines[start + (months - 1) // 2] + lines[start + months // 2]) / 2 if len(lines) else np.zeros(0)
    out = Tally("max", "max")
    out.add(accounts, np.stack([np.round(median * 1000), months], axis=1).astype(np.int64))
    return out


def _hts_counts(cls_hts: Tally) -> Tally:
    """Distinct HTS numbers per (importer x manufacturer, heading)."""
    unique, counts = np.unique(cls_hts.items()[1].view(np.uint64), return_counts=True)
    out = Tally("max")
    out.add(unique, counts.astype(np.int64))
    return out


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
        self.learned = learned
        if learned is not None and (history is None or learned.trees.features != tuple(self.feature_names())):
            raise ValueError("the learned trees do not match this model's features")
        # The canonical (and extra) columns scoring reads beyond consolidation's.
        self.input_columns = SCORING_COLUMNS + (("filer_code", *history.extra) if history is not None else ())
        t = baselines.tallies
        self.tallies = t
        self.enabled = frozenset(self.config.enabled)
        kinds = history.kinds if learned is not None else ()
        self.lines_schema = lines_schema(self.config.enabled, kinds)
        self.scored_schema = scored_schema(self.config.enabled, kinds)
        missing = [f"{tally} (for {name})" for name in self.enabled for tally in INDICATOR_TALLIES[name]
                   if tally not in t]
        if missing:
            raise ValueError(f"these baselines were fitted without {', '.join(missing)}: refit with this config")
        span = baselines.day_range()
        self.first_day = span[0] if span else 0
        self.norms = Norms(baselines, self.config.min_group_lines) if "uv_hist" in t else None
        # Unit-value moments per group at the levels that keep them (HTS10 x origin, HTS10).
        self.uv_moments = Tally(*TALLIES["uv_moments"]) if "uv_moments" in t else None
        if self.uv_moments is not None:
            self.uv_moments.add(*roll_up(*t["uv_moments"].items(), levels=MOMENT_LEVELS))
        self.origin_price = _origin_prices(self.uv_moments) if self.uv_moments is not None else None
        self.effective_ports = _effective_ports(t["acct_port"]) if "acct_port" in t else None
        self.typical_month = _typical_months(t["acct_month"]) if "acct_month" in t else None
        self.cls_hts_count = _hts_counts(t["cls_hts"]) if "cls_hts" in t else None
        # The industry norms of the account indicators, over accounts big enough to set them.
        th = self.config.thresholds
        acct, acct_fields = t["acct"].items()
        first, last, acct_lines = acct_fields[:, 0], acct_fields[:, 1], acct_fields[:, 2]
        big = acct_lines >= th["account_min_lines"]
        eff = self.effective_ports.get(acct) / 1000.0 if self.effective_ports is not None else np.ones(len(acct))
        self.ports_norm = float(np.quantile(eff[big], th["port_spread_quantile"])) if big.any() else 1.0
        per_day = acct_lines / (last - first + 1)
        self.rate_norm = float(np.quantile(per_day[big], th["new_importer_quantile"])) if big.any() else 1.0

    # ------------------------------------------------------------ artifact

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the model atomically as one Arrow IPC file (no pickle): the baselines' and
        the history's tallies as rows, the rest (config, learned trees) as JSON metadata."""
        table = self.baselines.to_arrow()
        meta = {**self.meta, "format": MODEL_FORMAT, "version": __version__, "config": self.config.to_dict()}
        if self.history is not None:  # the same layout: one table, one dictionary of tally names
            history = self.history.to_arrow()
            both = pa.concat_tables([table, history.replace_schema_metadata(table.schema.metadata)])
            table = both.unify_dictionaries().combine_chunks().replace_schema_metadata(
                {**table.schema.metadata, **history.schema.metadata})
        if self.learned is not None:
            meta["learned"] = self.learned.to_dict()
        schema = table.schema.with_metadata({**table.schema.metadata, b"ceecore.model": json.dumps(meta).encode()})
        options = ipc.IpcWriteOptions(compression="zstd")  # half the size, no slower here
        with atomic_path(path) as tmp, ipc.new_file(tmp, schema, options=options) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Reads a model written by :meth:`save`; one clear error for anything else."""
        where = os.fspath(path)
        try:
            with pa.memory_map(where) as source:
                table = ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise ValueError(f"{where}: not a ceecore model (cannot read it as an Arrow IPC file: {exc})") from exc
        raw = (table.schema.metadata or {}).get(b"ceecore.model")
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") is None:
            raise ValueError(f"{where}: not a ceecore model (no ceecore.model metadata)")
        if meta["format"] != MODEL_FORMAT:
            raise ValueError(f"{where}: model format {meta['format']!r} is not {MODEL_FORMAT!r}; refit it with "
                             f"ceecore {__version__}")
        try:
            tally = table.column("tally").cast(pa.string())
            mine = pc.equal(tally, "history")
            history = History.from_arrow(_rows(table, mine)) if pc.any(mine).as_py() else None
            baselines = Baselines.from_arrow(_rows(table, pc.invert(mine)))
            learned = Learned.from_dict(meta["learned"]) if meta.get("learned") else None
            config = ScoringConfig.from_doc({
                "weights": meta["config"]["weights"], "thresholds": meta["config"]["thresholds"],
                "norms": {"min_group_lines": meta["config"]["min_group_lines"]},
                "output": {k: meta["config"][k] for k in ("reasons", "account_top_lines", "worklist",
                                                          "exploration_share", "exploration_seed")
                           if k in meta["config"]},
            }, where)
            return cls(baselines, config, meta, history, learned)
        except (KeyError, TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            raise ValueError(f"{where}: corrupt ceecore model: {exc}") from exc

    # ------------------------------------------------------------ indicators

    def indicators(self, f: LineFields) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Strength per line and indicator (an (n, len(INDICATORS)) matrix), and the raw
        values behind them; indicators turned off stay 0, their raw values NaN."""
        n = len(f)
        s = np.zeros((n, len(INDICATORS)))
        raw = {name: np.full(n, np.nan) for name in RAW_VALUES}
        on = self.enabled
        if on & {"unit_value_low", "unit_value_outlier"}:
            self._unit_value(f, s, raw)
        if "duty_below_peers" in on:
            self._duty(f, s, raw)
        if "preference_rare" in on:
            self._preference(f, s, raw)
        if "origin_rare" in on:
            self._origin_rare(f, s, raw)
        if "origin_switch" in on:
            self._origin_switch(f, s)
        if "classification_disparity" in on:
            self._classification(f, s)
        account, raw["effective_ports"], raw["lines_per_day"] = self.account_strengths(f.importer, raw=True)
        s[:, [_COL[name] for name in ACCOUNT_INDICATORS]] = account
        if "volume_surge" in on:
            self._volume_surge(f, s, raw)
        return s, raw

    def _unit_value(self, f: LineFields, s: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        th = self.config.thresholds
        t = self.tallies
        # The line's own unit value against the norm of its product.
        line_median, line_spread, line_level = self.norms.lookup(f)
        z = (f.log_uv - line_median) / line_spread
        raw["unit_value_z"], raw["norm_level"] = z, line_level.astype(float)
        if "unit_value_outlier" in self.enabled:
            s[:, _COL["unit_value_outlier"]] = _ramp(np.abs(z), th["unit_value_outlier_from"],
                                                     th["unit_value_outlier_to"])
        if "unit_value_low" not in self.enabled:
            return
        # The account's mean for the product (from history) against the norm of the same
        # HTS number (and origin, if its lines are enough): the robust median while the
        # account's own lines are at most half the group, else the other accounts' mean
        # and spread. HTS6 and HTS4 mix products too different in price to judge an
        # account by.
        own = t["ap_uv"].get(ap_key(f))
        count, own_sum, own_sq = own[:, 0], own[:, 1], own[:, 2]
        mean = np.where(count > 0, own_sum / np.maximum(count, 1) / 1e6, f.log_uv)
        centre, spread, used = self.norms.lookup(f, own=count, max_level=MOMENT_LEVELS - 1, max_own_share=0.5)
        for lv, (hts, origin) in enumerate(level_codes(f)[:MOMENT_LEVELS]):
            todo = np.isnan(centre)
            group = self.uv_moments.get(uv_group(lv, f.basis, hts, origin))
            others = group[:, 0] - count
            ok = todo & (others >= th["others_min_lines"])
            m = (group[:, 1] - own_sum) / np.maximum(others, 1) / 1e6
            var = (group[:, 2] - own_sq) / np.maximum(others, 1) / 1e6 - m**2
            robust = np.where(line_level <= lv, line_spread, np.nan)  # the histogram's spread, at this level or finer
            centre = np.where(ok, m, centre)
            spread = np.where(ok, np.fmax(np.sqrt(np.maximum(var, BIN_WIDTH**2)), robust), spread)
            used = np.where(ok, lv, used)
        # Across origins (level 1), the norm is moved by the origin's national price index.
        centre = centre + np.where(used == 1, self.origin_price[f.country * 2 + f.basis], 0.0)
        size = (mean - centre) / spread
        raw["account_unit_value_z"] = size
        s[:, _COL["unit_value_low"]] = np.minimum(
            _ramp(-size * np.sqrt(np.maximum(count, 1)), th["unit_value_low_z_from"], th["unit_value_low_z_to"]),
            _ramp(-size, th["unit_value_low_size_from"], th["unit_value_low_size_to"]))

    def _duty(self, f: LineFields, s: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        """Duty against peers of the same HTS number and origin without a preference claim."""
        th = self.config.thresholds
        peers = self.tallies["duty"].get(duty_key(f) & np.uint64((1 << 50) - 1))
        peer_rate = np.where(peers[:, 0] > 0, peers[:, 1] / np.maximum(peers[:, 0], 1), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.where((f.spi == 0) & (peer_rate > 0), 1 - (f.rate_bp / 1e4) / peer_rate, np.nan)
        raw["peer_duty_rate"] = peer_rate
        s[:, _COL["duty_below_peers"]] = _ramp(gap, th["duty_gap_from"], th["duty_gap_to"])

    def _preference(self, f: LineFields, s: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        """A preference claimed where the origin's lines rarely claim it."""
        th = self.config.thresholds
        claims = self.tallies["claims"]
        origin_lines = claims.get(claim_key(f.country, np.zeros(len(f), np.int64)))
        share = np.where(f.spi > 0, claims.get(claim_key(f.country, f.spi)) / np.maximum(origin_lines, 1), np.nan)
        raw["claim_share"] = share
        s[:, _COL["preference_rare"]] = _ramp(share, th["preference_share_from"], th["preference_share_to"])

    def _origin_rare(self, f: LineFields, s: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        """An origin rare for the product (HTS6) nationally."""
        th = self.config.thresholds
        lines = self.tallies["origin_lines"]
        hts6_lines = lines.get(origin_key(f.hts6, np.full(len(f), ANY_ORIGIN)))
        share = np.where(hts6_lines >= th["origin_min_lines"],
                         lines.get(origin_key(f.hts6, f.country)) / np.maximum(hts6_lines, 1), np.nan)
        raw["origin_share"] = share
        s[:, _COL["origin_rare"]] = _ramp(share, th["origin_share_from"], th["origin_share_to"])

    def _origin_switch(self, f: LineFields, s: np.ndarray) -> None:
        """The account's origin for a product newly switched, the old origin stopped."""
        th = self.config.thresholds
        t = self.tallies
        earliest = t["ap_earliest"].get(earliest_key(f), -1)
        first_origin, product_first = earliest % 1024, earliest // 1024
        mine = t["ap_days"].get(ap_day_key(f), -1)
        old = t["ap_days"].get(ap_day_key(f, first_origin), -1)
        origin_first = mine[:, 0]
        switched = ((earliest >= 0) & (origin_first >= 0) & (f.country != first_origin)
                    & (old[:, 1] <= origin_first + th["switch_overlap_days"])
                    & (old[:, 2] >= th["switch_min_lines"]) & (mine[:, 2] >= th["switch_min_lines"]))
        gap = origin_first - product_first
        s[:, _COL["origin_switch"]] = np.where(switched, _ramp(gap, th["switch_gap_days"], 3 * th["switch_gap_days"]),
                                               0.0)

    def _classification(self, f: LineFields, s: np.ndarray) -> None:
        """The same importer + manufacturer + heading under a dearer HTS number at other ports."""
        t = self.tallies
        group = cls_group_key(f)
        group_max = t["cls_group_max"].get(group, -1)
        port_max = np.maximum(t["cls_port_max"].get(cls_port_key(f), -1), f.rate_bp)  # this line counts too
        numbers = self.cls_hts_count.get(group)
        gap = np.where((f.maker != 0) & (numbers >= 2) & (f.rate_bp < group_max) & (group_max > 0),
                       (group_max - port_max) / np.maximum(group_max, 1), 0.0)
        s[:, _COL["classification_disparity"]] = _ramp(gap, 0.0, self.config.thresholds["disparity_gap_to"])

    def _volume_surge(self, f: LineFields, s: np.ndarray, raw: dict[str, np.ndarray]) -> None:
        """An account's month far above its usual month."""
        th = self.config.thresholds
        month_lines = self.tallies["acct_month"].get(month_key(f))[:, 0]
        typical = self.typical_month.get(f.importer, 0)
        surge = month_lines / np.maximum(typical[:, 0] / 1000, 1e-9)
        enough = (typical[:, 1] >= th["surge_min_months"]) & (month_lines >= th["surge_min_lines"])
        raw["month_volume_ratio"] = surge
        s[:, _COL["volume_surge"]] = np.where(enough, _ramp(surge, th["surge_from"], th["surge_to"]), 0.0)

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
        X = np.column_stack([strengths[:, [_COL[n] for n in self.config.enabled]],
                             *[raw[n] for n in raw_values(self.config.enabled)], *own, history]) \
            if len(f) else np.zeros((0, len(self.feature_names())))
        return X, strengths, raw, history

    def account_strengths(self, importers: np.ndarray, raw: bool = False) -> Any:
        """Strengths of :data:`ACCOUNT_INDICATORS` per importer hash (and, with ``raw``,
        its effective ports and lines per active day)."""
        th = self.config.thresholds
        n = len(importers)
        spread, volume, ports, per_day = np.zeros(n), np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
        if "port_spread" in self.enabled:
            ports = self.effective_ports.get(importers) / 1000.0
            spread = _ramp(ports / self.ports_norm, th["port_spread_from"], th["port_spread_to"])
        if "new_importer" in self.enabled:
            account = self.tallies["acct"].get(importers, -1)
            first = account[:, 0]
            days = account[:, 1] - first + 1
            per_day = np.maximum(account[:, 2], 0) / np.maximum(days, 1)
            new = (first >= 0) & (first >= self.first_day + th["new_importer_after_days"])
            volume = np.where(new, _ramp(per_day / self.rate_norm, th["new_importer_from"], th["new_importer_to"]), 0.0)
        strengths = np.stack([spread, volume], axis=1)
        return (strengths, ports, per_day) if raw else strengths

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


RAW_VALUES: tuple[str, ...] = ("unit_value_z", "account_unit_value_z", "norm_level", "peer_duty_rate", "claim_share",
                                "origin_share", "effective_ports", "lines_per_day", "month_volume_ratio")
# The raw values behind each indicator.
INDICATOR_RAW_VALUES: dict[str, tuple[str, ...]] = {
    "unit_value_low": ("unit_value_z", "account_unit_value_z", "norm_level"),
    "unit_value_outlier": ("unit_value_z", "norm_level"),
    "duty_below_peers": ("peer_duty_rate",),
    "preference_rare": ("claim_share",),
    "origin_rare": ("origin_share",),
    "origin_switch": (),
    "classification_disparity": (),
    "port_spread": ("effective_ports",),
    "new_importer": ("lines_per_day",),
    "volume_surge": ("month_volume_ratio",),
}
_ID_TYPES = {"line_number": pa.int64(), "entry_date": pa.date32()}
_OUTCOME_TYPES = {"inspected": pa.bool_(), "violation": pa.bool_(), "revenue_recovered": pa.float64()}


def raw_values(indicators: tuple[str, ...]) -> tuple[str, ...]:
    """The raw values behind ``indicators``, in :data:`RAW_VALUES` order."""
    wanted = {name for indicator in indicators for name in INDICATOR_RAW_VALUES[indicator]}
    return tuple(name for name in RAW_VALUES if name in wanted)


def lines_schema(indicators: tuple[str, ...] = INDICATORS, history: tuple[str, ...] = ()) -> pa.Schema:
    """A scored line: its identity, its outcome where known (null if the input had none),
    its Center, score and reasons, the strength of each of ``indicators`` (those turned
    on) and the raw values behind them; for a model that learned from outcomes, the
    smoothed violation rate of each ``history`` key."""
    return pa.schema(
        [(name, _ID_TYPES.get(name, pa.string())) for name in ID_COLUMNS]
        + list(_OUTCOME_TYPES.items())
        + [("center", pa.string()), ("score", pa.float64()), ("reasons", pa.list_(pa.string()))]
        + [(name, pa.float32()) for name in indicators]
        + [(name, pa.float32()) for name in raw_values(indicators)]
        + [(f"history:{kind}", pa.float32()) for kind in history]
    )


def scored_schema(indicators: tuple[str, ...] = INDICATORS, history: tuple[str, ...] = ()) -> pa.Schema:
    """What :meth:`Scorer.score` returns: every input row, with its reject reason (null if accepted)."""
    return lines_schema(indicators, history).insert(len(ID_COLUMNS), pa.field("reject_reason", pa.string()))


# How scored lines are written: dictionaries for the text columns only (the numbers
# rarely repeat), statistics for what readers filter on (identity, Center, score).
LINES_PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": [name for name in ID_COLUMNS if name not in _ID_TYPES] + ["center"],
    "write_statistics": [*ID_COLUMNS, "center", "score"],
}


class Scorer:
    """Scores record batches against a model: what a service embeds.

    ``score`` takes any Arrow producer (a record batch, a table, a polars frame) with
    canonical columns (or ``mapping``'s names) and returns one record batch with a row
    per input row: its identifying columns, ``reject_reason`` (null when it passed the
    data contract), its Center, ``score`` and ``reasons`` (null when rejected), each
    indicator's strength and the raw values behind them. The heavy work runs in numpy
    and compiled kernels that release the GIL; the scorer holds no mutable state, so
    several threads may call ``score`` at once.
    """

    def __init__(self, model: Model, mapping: ColumnMapping | None = None, centers: CenterMap | None = None) -> None:
        self.model = model
        self.mapping = mapping or ColumnMapping()
        self.centers = centers or CenterMap.default()

    def score(self, data: Any, source: str = "<batch>") -> pa.RecordBatch:
        table = data if isinstance(data, pa.RecordBatch) else pa.table(data)
        if table.num_rows == 0:
            batches = [pa.RecordBatch.from_pylist([], schema=table.schema)]
        else:
            batches = pa.table(table).to_batches(max_chunksize=BATCH_ROWS)
        scored = [self._score_batch(b, source) for b in batches if b.num_rows or len(batches) == 1]
        return scored[0] if len(scored) == 1 else pa.Table.from_batches(scored).combine_chunks().to_batches()[0]

    def _score_batch(self, batch: pa.RecordBatch, source: str) -> pa.RecordBatch:
        intake = AccountBook(self.centers, threads=1).parse(batch, self.mapping, source, self.model.input_columns)
        return score_intake(self.model, intake, self.centers)


def score_intake(model: Model, intake: Any, centers: CenterMap, out_of_fold: bool = False) -> pa.RecordBatch:
    """The scored rows of one ingested batch (see :class:`Scorer`).

    ``out_of_fold``: these are lines the model learned from, so each line's history
    leaves out its entry's fold, as in training: no entry's own outcomes raise its scores.
    """
    f = line_fields(intake)
    n = len(intake.codes)
    if model.learned is None:
        strengths, raw = model.indicators(f)
        score, top, fired = model.combine(strengths)
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

    def spread(values: np.ndarray, dtype: Any) -> pa.Array:
        out = np.zeros(n, dtype=values.dtype)
        out[f.rows] = values
        return pa.array(out, dtype, mask=rejected)

    columns["score"] = spread(score, pa.float64())
    columns["reasons"] = reason_lists(top, fired, reasons, f.rows, n)
    for name in model.config.enabled:
        columns[name] = spread(strengths[:, _COL[name]].astype(np.float32), pa.float32())
    for name in raw_values(model.config.enabled):
        columns[name] = spread(raw[name].astype(np.float32), pa.float32())
    for i, kind in enumerate(model.history.kinds if model.learned is not None else ()):
        columns[f"history:{kind}"] = spread(history[:, 3 * i].astype(np.float32), pa.float32())
    return pa.RecordBatch.from_pydict(columns, schema=model.scored_schema)


def load_model(path: str | os.PathLike[str], mapping: ColumnMapping | None = None,
               centers: CenterMap | None = None) -> Scorer:
    """A :class:`Scorer` for the model saved at ``path``."""
    return Scorer(Model.load(Path(path)), mapping, centers)
