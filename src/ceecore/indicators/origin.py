"""The origin family: where goods come from, for the product and for the account."""

from ceecore.indicators.base import Indicator

__all__ = ["ORIGIN_RARE", "ORIGIN_SWITCH"]

ORIGIN_RARE = Indicator(
    name="origin_rare",
    doc="the origin is rare for the product (HTS6) nationally",
    tallies=("origin_lines",),
    raw=("origin_share",),
    thresholds=("origin_share_from", "origin_share_to", "origin_min_lines"),
)

ORIGIN_SWITCH = Indicator(
    name="origin_switch",
    doc="the account's origin for a product switched to a new country: the old one stopping, or going on while "
        "the new one takes a share too late to be chance; where the line pays less duty than the old origin's goods",
    tallies=("ap_days", "ap_earliest", "duty"),
    thresholds=("switch_gap_days", "switch_overlap_days", "switch_min_lines", "switch_evidence_from",
                "switch_evidence_to"),
)
