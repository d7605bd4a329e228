"""The unit-value family: a line's price, and an account's, against the product's norm."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ceecore._kernels._tally import Tally
from ceecore.baselines import ANY_ORIGIN, MOMENT_LEVELS, TALLIES, Norms, roll_up, uv_group
from ceecore.indicators.base import Indicator, Lookup

__all__ = ["UNIT_VALUE_LOW", "UNIT_VALUE_OUTLIER"]


def origin_prices(uv_moments: Tally) -> np.ndarray:
    """Each origin's price index, per (origin * 2 + basis): how far its lines' mean log unit
    value for an HTS number sits above that of the other origins, averaged over HTS
    numbers (weighted by the smaller side, so that no product dominated by one origin
    sets it). ``uv_moments`` holds the rolled-up levels."""
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


def unit_value_lookups(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """The robust norms per unit-value group at every level (from the histograms), and,
    where the moments were fitted, their rolled-up sums and each origin's price index."""
    norms = Norms(tallies["uv_hist"])
    out: dict[str, Lookup] = {"norm_index": norms.index, "norm_median": norms.median, "norm_spread": norms.spread,
                              "norm_lines": norms.lines}
    if "uv_moments" in tallies:
        moments = Tally(*TALLIES["uv_moments"])
        moments.add(*roll_up(*tallies["uv_moments"].items(), levels=MOMENT_LEVELS))
        out.update(uv_moments=moments, origin_price=origin_prices(moments))
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
