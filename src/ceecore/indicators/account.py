"""The account family: an importer's whole activity against the industry's."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ceecore._kernels._tally import Tally
from ceecore.indicators.base import Indicator, Lookup

__all__ = ["NEW_IMPORTER", "PORT_SPREAD", "VOLUME_SURGE"]


def _big_accounts(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every account's (importer hash, first day, last day, lines), and which are big
    enough to set the industry's norms."""
    accounts, fields = tallies["acct"].items()
    return accounts, fields, fields[:, 2] >= thresholds["account_min_lines"]


def effective_ports(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """Per account its effective number of ports (exp of the entropy of its lines by
    port, x 1000), and the industry's norm: a quantile of it over big accounts."""
    _, port_fields = tallies["acct_port"].items()
    lines, owners = port_fields[:, 0], port_fields[:, 1].view(np.uint64)
    order = np.argsort(owners, kind="stable")
    owners, lines = owners[order], lines[order].astype(float)
    accounts, start = np.unique(owners, return_index=True)
    total = np.add.reduceat(lines, start) if len(lines) else np.zeros(0)
    p = lines / np.repeat(total, np.diff(np.r_[start, len(lines)]))
    entropy = -np.add.reduceat(p * np.log(p), start) if len(lines) else np.zeros(0)
    ports = Tally("max")
    ports.add(accounts, np.round(np.exp(entropy) * 1000).astype(np.int64))
    acct, _, big = _big_accounts(tallies, thresholds)
    eff = ports.get(acct) / 1000.0
    norm = float(np.quantile(eff[big], thresholds["port_spread_quantile"])) if big.any() else 1.0
    return {"effective_ports": ports, "ports_norm": norm}


def rate_norm(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """The industry's norm of lines per active day: a quantile over big accounts."""
    _, fields, big = _big_accounts(tallies, thresholds)
    per_day = fields[:, 2] / (fields[:, 1] - fields[:, 0] + 1)
    return {"rate_norm": float(np.quantile(per_day[big], thresholds["new_importer_quantile"])) if big.any() else 1.0}


def typical_months(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """Per account: the median of its lines over the months it filed in (x 1000), and how many months."""
    _, month_fields = tallies["acct_month"].items()
    owner, lines = month_fields[:, 1].view(np.uint64), month_fields[:, 0]
    order = np.lexsort((lines, owner))
    owner, lines = owner[order], lines[order]
    accounts, start, months = np.unique(owner, return_index=True, return_counts=True)
    median = (lines[start + (months - 1) // 2] + lines[start + months // 2]) / 2 if len(lines) else np.zeros(0)
    out = Tally("max", "max")
    out.add(accounts, np.stack([np.round(median * 1000), months], axis=1).astype(np.int64))
    return {"typical_month": out}


PORT_SPREAD = Indicator(
    name="port_spread",
    doc="the account spreads its goods over far more ports than the industry (effective ports vs the 95th "
        "percentile)",
    tallies=("acct_port",),
    raw=("effective_ports",),
    thresholds=("port_spread_quantile", "port_spread_from", "port_spread_to", "account_min_lines"),
    account_level=True,
    lookups=effective_ports,
)

NEW_IMPORTER = Indicator(
    name="new_importer",
    doc="an account new in the data files far more lines per day than the industry (counting on each line in "
        "proportion to its value against its product's mean line), or files a line of far greater value than its "
        "product's lines",
    tallies=("acct", "duty", "uv_moments"),
    raw=("lines_per_day", "line_value_ratio"),
    thresholds=("new_importer_after_days", "new_importer_quantile", "new_importer_from", "new_importer_to",
                "new_importer_value_from", "new_importer_value_to", "others_min_lines", "account_min_lines"),
    account_level=True,
    lookups=rate_norm,
)

VOLUME_SURGE = Indicator(
    name="volume_surge",
    doc="the account's lines this month are far above its usual (median) month",
    tallies=("acct_month",),
    raw=("month_volume_ratio",),
    thresholds=("surge_from", "surge_to", "surge_min_months", "surge_min_lines"),
    lookups=typical_months,
)
