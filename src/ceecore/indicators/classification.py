"""Classification: the same goods declared under different HTS numbers at different ports."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ceecore._kernels._tally import Tally
from ceecore.indicators.base import Indicator, Lookup
from ceecore.indicators.unit_value import unit_value_lookups

__all__ = ["CLASSIFICATION_DISPARITY", "CLASSIFICATION_PRICE"]


def hts_counts(tallies: Mapping[str, Tally], thresholds: Mapping[str, float]) -> dict[str, Lookup]:
    """Distinct HTS numbers per (importer x manufacturer, heading)."""
    unique, counts = np.unique(np.ascontiguousarray(tallies["cls_hts"].items()[1][:, 0]).view(np.uint64),
                               return_counts=True)
    out = Tally("max")
    out.add(unique, counts.astype(np.int64))
    return {"cls_hts_count": out}


CLASSIFICATION_DISPARITY = Indicator(
    name="classification_disparity",
    doc="the same importer + manufacturer + heading is declared under a dearer HTS number at other ports (and "
        "none there, or the line's number only here, too often to be chance)",
    tallies=("cls_group_max", "cls_port_max", "cls_hts", "cls_hts_lines"),
    thresholds=("disparity_gap_to", "disparity_evidence_from", "disparity_evidence_to"),
    lookups=hts_counts,
)

CLASSIFICATION_PRICE = Indicator(
    name="classification_price",
    doc="the account's goods under the line's HTS number are priced like those it declares under the dearest number "
        "the same importer + manufacturer declares in the heading, not like the line's number's norm (misclassified "
        "goods keep their own price), wherever the importer files them",
    tallies=("cls_group_max", "uv_hist", "uv_moments", "ap_uv"),
    raw=("dearer_price_evidence",),
    thresholds=("classification_price_from", "classification_price_to", "others_min_lines"),
    lookups=unit_value_lookups,
)
