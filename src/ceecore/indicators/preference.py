"""Preference (SPI) claims."""

from ceecore.indicators.base import Indicator

__all__ = ["PREFERENCE_RARE"]

PREFERENCE_RARE = Indicator(
    name="preference_rare",
    doc="a preference (SPI) is claimed where that origin's lines nationally almost never claim it",
    tallies=("claims",),
    raw=("claim_share",),
    thresholds=("preference_share_from", "preference_share_to"),
)
