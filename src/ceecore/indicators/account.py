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
    port) and the evidence of its spread (:func:`port_spread_evidence`), both x 1000,
    and the industry's norm of effective ports: a quantile over big accounts."""
    keys, port_fields = tallies["acct_port"].items()
    owners = port_fields[:, 1].view(np.uint64)
    order = np.lexsort((keys, -port_fields[:, 0], owners))  # per account, its busiest port first
    owners, lines = owners[order], port_fields[order, 0].astype(float)
    accounts, start, ports = np.unique(owners, return_index=True, return_counts=True)
    total = np.add.reduceat(lines, start) if len(lines) else np.zeros(0)
    p = lines / np.repeat(total, ports)
    entropy = -np.add.reduceat(p * np.log(p), start) if len(lines) else np.zeros(0)
    big = total >= thresholds["account_min_lines"]
    rank = np.arange(len(p)) - np.repeat(start, ports)
    usual = np.bincount(rank[np.repeat(big, ports)], p[np.repeat(big, ports)], minlength=1) / max(int(big.sum()), 1)
    evidence = port_spread_evidence(total, ports, usual) if big.any() else np.zeros(len(accounts))
    kept = np.round(np.stack([np.exp(entropy), evidence], axis=1) * 1000).astype(np.int64)  # as scoring reads them
    spread = Tally("max", "max")
    spread.add(accounts, kept)
    norm = float(np.quantile(kept[big, 0] / 1000.0, thresholds["port_spread_quantile"])) if big.any() else 1.0
    return {"effective_ports": spread, "ports_norm": norm}


def port_spread_evidence(lines: np.ndarray, ports: np.ndarray, usual: np.ndarray) -> np.ndarray:
    """-log10 of the chance that an account of the industry's usual concentration, with
    the account's number of lines, reaches as many ports as it did (at most 300).

    ``usual[k]`` is the industry's usual share of an account's lines at its (k+1)-th
    busiest port (the mean over big accounts). Its lines drawn at those shares (the
    count Poisson, so the ports are reached independently), port k is reached with
    chance ``1 - exp(-lines * usual[k])`` and the ports reached are a Poisson-binomial
    count, whose upper tail is computed exactly, once per distinct number of lines. So
    a small account is judged on the scale of a big one: the ports a big account reaches
    by its volume alone are all but impossible for 40 lines. An account with more ports
    than any big account has is beyond the usual concentration (chance 0: 300). Lines of
    one entry go to one port: counted as lines, the chance is the larger (conservative).
    """
    ports = np.asarray(ports)
    sizes, which = np.unique(np.asarray(lines, float), return_inverse=True)
    within = ports <= len(usual)  # beyond: no big account reaches so many, chance 0
    need = np.zeros(len(sizes), np.int64)  # per size, the most ports an account of it reached
    np.maximum.at(need, which[within], ports[within])
    chance = np.zeros(len(ports))
    # Per size, only the chances of reaching up to its accounts' ports are kept (the last
    # state holds "at least that many"): sizes grouped by that width, a power of 2.
    width = np.minimum(2 ** np.ceil(np.log2(need + 1)).astype(np.int64), len(usual) + 1)
    for w in np.unique(width):
        rows = np.flatnonzero(width == w)
        reached = np.zeros((len(rows), w))  # per size, P(ports reached = j), the last j: at least
        reached[:, 0] = 1.0
        for share in usual if w > 1 else ():  # (at least no port: chance 1)
            hit = -np.expm1(-sizes[rows] * share)[:, None]
            last = reached[:, -1:] + reached[:, -2:-1] * hit
            reached[:, 1:] = reached[:, 1:] * (1 - hit) + reached[:, :-1] * hit
            reached[:, :1] *= 1 - hit
            reached[:, -1:] = last
        tail = np.cumsum(reached[:, ::-1], axis=1)[:, ::-1]  # P(ports reached >= j)
        mine = within & (width[which] == w)
        chance[mine] = tail[np.searchsorted(rows, which[mine]), ports[mine]]
    return -np.log10(np.clip(chance, 1e-300, 1.0))


def new_account_norms(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """The industry's norms an account new in the data is judged by, over big accounts:
    lines per active day (a quantile), and the value of a line: the median of accounts'
    mean log value per line (``value_centre``), how those means spread between accounts
    (``value_between``, a variance: the interquartile range's) and how an account's own
    lines spread about its mean (``value_within``, the median variance), so that an
    account of ``k`` lines is judged in the standard error ``sqrt(between + within / k)``."""
    _, fields, big = _big_accounts(tallies, thresholds)
    per_day = fields[:, 2] / (fields[:, 1] - fields[:, 0] + 1)
    out: dict[str, Lookup] = {
        "rate_norm": float(np.quantile(per_day[big], thresholds["new_importer_quantile"])) if big.any() else 1.0,
        "value_centre": 0.0, "value_between": 1.0, "value_within": 0.0}
    valued = big & (fields[:, 3] > 1)
    if valued.any():
        k = fields[valued, 3].astype(float)
        mean = fields[valued, 4] / k / 1e6
        within = np.maximum(fields[valued, 5] / k / 1e6 - mean**2, 0.0) * k / (k - 1)
        q1, median, q3 = np.quantile(mean, [0.25, 0.5, 0.75])
        out.update(value_centre=float(median), value_between=float(max(((q3 - q1) / 1.349) ** 2, 1e-6)),
                   value_within=float(np.median(within)))
    return out


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
    doc="the account spreads its goods over more ports than the industry's usual concentration allows an "
        "account of its lines (too many to be chance), or over far more ports than big accounts (effective ports vs "
        "the 95th percentile)",
    tallies=("acct_port",),
    raw=("effective_ports", "port_spread_evidence"),
    thresholds=("port_spread_quantile", "port_spread_from", "port_spread_to", "port_spread_evidence_from",
                "port_spread_evidence_to", "account_min_lines"),
    account_level=True,
    lookups=effective_ports,
)

NEW_IMPORTER = Indicator(
    name="new_importer",
    doc="an account new in the data files far more lines per day than the industry, or lines of far greater value "
        "than the industry's accounts do, too many to be chance (counting on each line in proportion to its value "
        "against its product's mean line)",
    tallies=("acct", "duty", "uv_moments"),
    raw=("lines_per_day", "account_value_z", "line_value_ratio"),
    thresholds=("new_importer_after_days", "new_importer_quantile", "new_importer_from", "new_importer_to",
                "new_importer_value_from", "new_importer_value_to", "others_min_lines", "account_min_lines"),
    account_level=True,
    lookups=new_account_norms,
)

VOLUME_SURGE = Indicator(
    name="volume_surge",
    doc="the account's lines this month are far above its usual (median) month",
    tallies=("acct_month",),
    raw=("month_volume_ratio",),
    thresholds=("surge_from", "surge_to", "surge_min_months", "surge_min_lines"),
    lookups=typical_months,
)
