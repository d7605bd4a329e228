"""The unit-value family: a line's price, and an account's, against the product's norm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ceecore._kernels._tally import Tally, combine
from ceecore.baselines import ANY_ORIGIN, MOMENT_LEVELS, TALLIES, Norms, coarser_group, roll_up, uv_group
from ceecore.indicators.base import Indicator, Lookup

__all__ = ["PORT_UNIT_VALUE_LOW", "UNIT_VALUE_LOW", "UNIT_VALUE_OUTLIER"]

ACCT_PORT_TAG = 7  # TAG_ACCT_PORT of _kernels/_keys.pxd: port_price is keyed as acct_port is
MAJOR_PORT_SHARE = 0.2  # a port with this share of an account's priced lines may be its main port
REFERENCE_MIN_LINES = 5  # priced lines a port needs to be the account's dearest against the norms
ORIGIN_FIT_ROUNDS = 50  # at most this many rounds of the origin index's fit (each a pass over the numbers' origins)


class _OriginRows(NamedTuple):
    """The rolled-up unit-value moments at HTS10 x origin (level 0), decoded."""

    moments: np.ndarray  # (lines, sum, sum of squares), as floats (sums x 1e6)
    slot: np.ndarray     # origin * 2 + basis
    number: np.ndarray   # the HTS number's level-1 group key (basis, HTS10, any origin)


def _origin_rows(uv_moments: Tally) -> _OriginRows:
    keys, moments = uv_moments.items()
    level0 = (keys >> np.uint64(50)) == 0
    keys = keys[level0]
    basis = ((keys >> np.uint64(49)) & np.uint64(1)).astype(np.int64)
    hts = ((keys >> np.uint64(10)) & np.uint64((1 << 38) - 1)).astype(np.int64)
    origin = (keys & np.uint64(1023)).astype(np.int64)
    return _OriginRows(moments[level0].astype(float), origin * 2 + basis,
                       uv_group(1, basis, hts, np.full(len(keys), ANY_ORIGIN)))


def origin_prices(uv_moments: Tally) -> np.ndarray:
    """Each origin's price index, per (origin * 2 + basis): the origin's part of its
    lines' mean log unit values in an additive fit, HTS number plus origin (least
    squares weighed by lines, fitted by alternating the two parts' means), centred on
    its lines' mean. Unlike each origin's mean gap to the other origins of the same
    number, this does not overstate an origin's part where few origins share a number
    (two origins: twice). ``uv_moments`` holds the rolled-up levels."""
    rows = _origin_rows(uv_moments)
    lines, slot = rows.moments[:, 0], rows.slot
    _, number = np.unique(rows.number, return_inverse=True)
    mean = rows.moments[:, 1] / 1e6 / np.maximum(lines, 1)
    number_lines = np.maximum(np.bincount(number, lines), 1)
    slot_lines = np.bincount(slot, lines, minlength=2048)
    part = np.zeros(2048)
    for _ in range(ORIGIN_FIT_ROUNDS if len(lines) else 0):
        level = np.bincount(number, lines * (mean - part[slot])) / number_lines
        fitted = np.bincount(slot, lines * (mean - level[number]), minlength=2048) / np.maximum(slot_lines, 1)
        before, part = part, fitted
        if np.max(np.abs(part - before)) < 1e-9:
            break
    seen = slot_lines > 0
    for b in (0, 1):  # centred per basis on the lines' mean (only differences count)
        on = seen & (np.arange(2048) % 2 == b)
        if on.any():
            part[on] -= np.sum(slot_lines[on] * part[on]) / np.sum(slot_lines[on])
    return np.where(seen, part, 0.0)


def origin_mix(uv_moments: Tally, price: np.ndarray) -> Tally:
    """Per HTS10 (and basis; keyed as its level-1 unit-value group): the mean price
    index of its lines' origins (x 1e6). A norm across origins sits at that mix, so an
    origin's norm is the group's plus its own index less the mix, not plus its index
    alone (which would hold only where the group's origins average out to 0)."""
    rows = _origin_rows(uv_moments)
    lines = rows.moments[:, 0]
    groups, at = np.unique(rows.number, return_inverse=True)
    mix = np.bincount(at, lines * price[rows.slot], minlength=len(groups)) \
        / np.maximum(np.bincount(at, lines, minlength=len(groups)), 1)
    out = Tally("max")
    out.add(groups, np.round(mix * 1e6).astype(np.int64)[:, None])
    return out


def origin_price_variance(uv_moments: Tally, price: np.ndarray, mix: Tally, min_lines: float) -> float:
    """How far an origin's price for one HTS number strays from where its price index
    puts it (the HTS number's mean, plus the origin's index less the number's mix), as
    a variance in log units beyond the sampling error of the means: the uncertainty of
    a norm taken across origins. Over the HTS numbers' origins with ``min_lines`` lines
    and as many of other origins, weighed by the smaller side."""
    moments, slot, group = _origin_rows(uv_moments)
    whole = uv_moments.get(group).astype(float)
    n, rest = moments[:, 0], whole[:, 0] - moments[:, 0]
    use = (n >= min_lines) & (rest >= min_lines)
    if not use.any():
        return 0.0
    # The HTS number's mean holds every origin's stray, weighed by its share w: a stray
    # shows less its share, in variance 1 - 2 w + the sum of the shares squared.
    _, at = np.unique(group, return_inverse=True)
    share = n / whole[:, 0]
    shown = (1 - 2 * share + np.bincount(at, share**2)[at])[use]
    n, rest, all_lines = n[use], rest[use], whole[use, 0]
    sums, squares = moments[use, 1] / 1e6, moments[use, 2] / 1e6
    whole_sums, whole_squares = whole[use, 1] / 1e6, whole[use, 2] / 1e6
    mean, rest_mean = sums / n, (whole_sums - sums) / rest
    variance = np.maximum(squares / n - mean**2, 0.0)
    rest_variance = np.maximum((whole_squares - squares) / rest - rest_mean**2, 0.0)
    stray = mean - (whole_sums / all_lines + price[slot[use]] - mix.get(group[use]) / 1e6)
    # stray is rest / all_lines * (mean - rest_mean) less constants: its sampling variance
    sampling = (rest / all_lines) ** 2 * (variance / n + rest_variance / rest)
    weight = np.minimum(n, rest)
    return float(max(np.sum(weight * (stray**2 - sampling)) / np.sum(weight * shown), 0.0))


def port_prices(port_uv: Tally, norms: Norms, min_lines: float) -> Tally:
    """Per (account, port): how far below its prices at its main port the account
    declares the same goods at its other ports, as ``(z * 1e6, gap * 1e6)``; at the
    main port itself the other way round, so that the low side reads negative.

    The main port is where the account declares its goods dearest against their norms,
    of its major ports (each with at least ``MAJOR_PORT_SHARE`` of its lines with a
    unit value; ties: the busier, then the lower port number), else its busiest port:
    a shopper may send most of its entries to the ports where it declares less, so its
    busiest port need not be where it declares its goods as they are.

    Each of the account's products (HTS10 x origin x basis) filed at the main port and
    elsewhere counts: ``d`` the gap of its mean log unit value away from the main port
    to its mean there, in the product's spread ``s`` (its norm at HTS10 x origin, or
    HTS10 where that group has fewer than ``min_lines`` lines), weighed ``w = (n_main *
    n_away / (n_main + n_away)) / s^2`` (the inverse of d's variance). Over the products:
    ``gap = sum(w d) / sum(w)`` (log units) and ``z = sum(w d) / sqrt(sum(w))``, the
    pooled test of lower prices away from the main port, in standard errors: one test
    per account, whatever its number of ports or products. Accounts without such a
    product are left out.

    A port is also judged against the national norms: ``z`` its products' pooled gap to
    their medians (weighed ``n / s^2``, in standard errors), and ``gap`` its price level
    below the account's dearest port (of those with ``REFERENCE_MIN_LINES`` priced
    lines); where that ``z`` is the lower, it and that gap are kept. A shopper whose
    honest port holds too few of its lines to be a major one is found so; an account
    low at every port is no port shopper (its gap to its dearest port is small)."""
    _, fields = port_uv.items()
    lines, sums = fields[:, 0], fields[:, 1].astype(float)
    importer, packed = fields[:, 2], fields[:, 3].view(np.uint64)
    group = packed & np.uint64((1 << 50) - 1)
    port = (packed >> np.uint64(50)).astype(np.int64)
    accounts, owner = np.unique(importer, return_inverse=True)
    # Each product's norm: at HTS10 x origin, else HTS10, where the group has the lines.
    median, spread = np.full(len(lines), np.nan), np.full(len(lines), np.nan)
    for level in (1, 0):  # the finer level where it has the lines
        row = norms.index.get(coarser_group(level, group), -1)
        found = (row >= 0) & (norms.lines[np.maximum(row, 0)] >= min_lines)
        median = np.where(found, norms.median[np.maximum(row, 0)], median)
        spread = np.where(found, norms.spread[np.maximum(row, 0)], spread)
    # Per (account, port): its lines, and its price level against the norms (the mean
    # gap of its products' mean log unit values to their medians, weighed n / s^2).
    places, place = np.unique(owner * 16384 + port, return_inverse=True)
    place_lines = np.bincount(place, lines, minlength=len(places))
    normed = np.isfinite(median)
    w = np.where(normed, lines / np.where(normed, spread, 1.0) ** 2, 0.0)
    gap = np.where(normed, sums / np.maximum(lines, 1) / 1e6 - np.where(normed, median, 0.0), 0.0)
    place_weight = np.bincount(place, w, minlength=len(places))
    place_level = np.bincount(place, w * gap, minlength=len(places)) / np.maximum(place_weight, 1e-300)
    account_lines = np.bincount(places // 16384, place_lines, minlength=len(accounts))
    major = (place_lines >= MAJOR_PORT_SHARE * account_lines[places // 16384]) & (place_weight > 0)
    # The main port: of the major ports, the highest priced (then the lowest port); an
    # account without a priced major port: its busiest (then the lowest port).
    order = np.lexsort((places % 16384, -place_lines, -np.where(major, place_level, -np.inf), ~major,
                        places // 16384))
    first = np.r_[True, np.diff(places[order] // 16384) != 0] if len(order) else np.zeros(0, bool)
    main_port = np.full(len(accounts), -1)
    main_port[places[order][first] // 16384] = places[order][first] % 16384
    at_main = port == main_port[owner]
    # Per account-product: lines and sums at the main port and in all.
    order = np.lexsort((group, owner))
    new = np.r_[True, (owner[order][1:] != owner[order][:-1]) | (group[order][1:] != group[order][:-1])] \
        if len(order) else np.zeros(0, bool)
    product = np.empty(len(order), np.int64)
    product[order] = np.cumsum(new) - 1
    product_owner = owner[order][new]
    n_main = np.bincount(product, lines * at_main, minlength=len(product_owner))
    s_main = np.bincount(product, sums * at_main, minlength=len(product_owner))
    n_all = np.bincount(product, lines, minlength=len(product_owner))
    s_all = np.bincount(product, sums, minlength=len(product_owner))
    product_spread = np.full(len(product_owner), np.nan)
    product_spread[product] = spread
    use = (n_main > 0) & (n_all > n_main) & np.isfinite(product_spread)
    n, m = n_main[use], n_all[use] - n_main[use]
    d = ((s_all[use] - s_main[use]) / m - s_main[use] / n) / 1e6
    w = n * m / (n + m) / product_spread[use] ** 2
    weight = np.bincount(product_owner[use], w, minlength=len(accounts))
    pooled = np.bincount(product_owner[use], w * d, minlength=len(accounts))
    judged = weight[owner] > 0
    cells, at = np.unique(combine(ACCT_PORT_TAG, importer[judged], port[judged]), return_inverse=True)
    account = np.zeros(len(cells), np.int64)
    account[at] = owner[judged]
    side = np.ones(len(cells))  # away from the main port: as measured; at it, the other way round
    side[at] = np.where(at_main[judged], -1.0, 1.0)
    z = side * pooled[account] / np.sqrt(weight[account])
    gap = side * pooled[account] / weight[account]
    # Against the national norms: the port's z, and its gap below the account's dearest
    # port (of those with REFERENCE_MIN_LINES priced lines), where that test is the lower.
    reference = np.full(len(accounts), -np.inf)
    enough = (place_lines >= REFERENCE_MIN_LINES) & (place_weight > 0)
    np.maximum.at(reference, (places // 16384)[enough], place_level[enough])
    place_of = place[judged]
    norm_z, norm_gap = np.zeros(len(cells)), np.zeros(len(cells))
    norm_z[at] = place_level[place_of] * np.sqrt(place_weight[place_of])
    norm_gap[at] = place_level[place_of] - reference[owner[judged]]
    lower = (norm_z < z) & np.isfinite(norm_gap)
    out = Tally("min", "min")
    out.add(cells, np.stack([np.round(np.where(lower, norm_z, z) * 1e6),
                             np.round(np.where(lower, norm_gap, gap) * 1e6)], axis=1).astype(np.int64))
    return out


def unit_value_lookups(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """The robust norms per unit-value group at every level (from the histograms), and,
    where the moments were fitted, their rolled-up sums and each origin's price index."""
    norms = Norms(tallies["uv_hist"])
    out: dict[str, Lookup] = {"norm_index": norms.index, "norm_median": norms.median, "norm_spread": norms.spread,
                              "norm_lines": norms.lines}
    if "uv_moments" in tallies:
        moments = Tally(*TALLIES["uv_moments"])
        moments.add(*roll_up(*tallies["uv_moments"].items(), levels=MOMENT_LEVELS))
        price = origin_prices(moments)
        mix = origin_mix(moments, price)
        out.update(uv_moments=moments, origin_price=price, origin_mix=mix,
                   origin_price_variance=origin_price_variance(moments, price, mix, thresholds["others_min_lines"]))
    if "port_uv" in tallies:
        out["port_price"] = port_prices(tallies["port_uv"], norms, thresholds["others_min_lines"])
    return out


UNIT_VALUE_OUTLIER = Indicator(
    name="unit_value_outlier",
    doc="the line's own unit value is far from the robust norm of its product (finest of HTS10 x origin, HTS10, "
        "HTS6, HTS4 with enough lines)",
    tallies=("uv_hist",),
    raw=("unit_value_z", "norm_level"),
    thresholds=("unit_value_outlier_from", "unit_value_outlier_to"),
    lookups=unit_value_lookups,
)

UNIT_VALUE_LOW = Indicator(
    name="unit_value_low",
    doc="the account's mean unit value for a product (HTS10 x origin) is far below the norm of the other accounts "
        "(in spreads, and in standard errors), or a shallow shortfall is sustained over too many lines to be chance, "
        "or the line is far below the norm where the account's lines scatter too widely to be chance",
    tallies=("uv_hist", "uv_moments", "ap_uv"),
    raw=("unit_value_z", "account_unit_value_z", "norm_level"),
    thresholds=("unit_value_low_z_from", "unit_value_low_z_to", "unit_value_low_size_from", "unit_value_low_size_to",
                "others_min_lines", "unit_value_low_sustained_from", "unit_value_low_sustained_to",
                "unit_value_low_shortfall", "unit_value_low_scatter_from", "unit_value_low_scatter_to",
                "unit_value_low_depth_from", "unit_value_low_depth_to"),
    lookups=unit_value_lookups,
)

PORT_UNIT_VALUE_LOW = Indicator(
    name="port_unit_value_low",
    doc="away from its main port the account declares the same goods (HTS10 x origin) at lower prices than at "
        "its main port, by a material shortfall and too consistently to be chance: the shipments it routes through "
        "ports where it expects less scrutiny",
    tallies=("uv_hist", "port_uv"),
    raw=("port_unit_value_z",),
    thresholds=("port_unit_value_from", "port_unit_value_to", "unit_value_low_shortfall", "others_min_lines"),
    lookups=unit_value_lookups,
)
