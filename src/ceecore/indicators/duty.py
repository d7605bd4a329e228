"""Duty paid against peers."""

from ceecore.indicators.base import Indicator

__all__ = ["DUTY_BELOW_PEERS"]

DUTY_BELOW_PEERS = Indicator(
    name="duty_below_peers",
    doc="the line's effective duty rate is far below its peers' for the same HTS10 and origin",
    tallies=("duty",),
    raw=("peer_duty_rate",),
    thresholds=("duty_gap_from", "duty_gap_to"),
)
