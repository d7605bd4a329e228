"""Per-line numbers the baselines, the scorer and the history share, from one ingested batch.

The account kernel checks every line once and parses what every job needs (hashes of
the importer and its pairs, cents, day, Center, country, port, the HTS number at each
level, the preference program, the effective duty rate and the unit value) for the
accepted lines; :class:`LineFields` holds them, and nothing parses or hashes the
batch's text again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ceecore.accounts import Intake

__all__ = ["OUTCOME_COLUMNS", "SCORING_COLUMNS", "LineFields", "line_fields"]

# Canonical columns scoring reads beyond consolidation's: the preference claim, and the
# outcomes of inspections where known (passed through to the scored lines).
OUTCOME_COLUMNS: tuple[str, ...] = ("inspected", "violation", "revenue_recovered")
SCORING_COLUMNS: tuple[str, ...] = ("spi", *OUTCOME_COLUMNS)


@dataclass(frozen=True)
class LineFields:
    """Numbers per accepted line; ``rows`` are their positions in the batch.

    ``hts10`` identifies the HTS number as declared (digits * 16 + digit count, so
    "0101..." and "101..." differ); ``hts6`` and ``hts4`` are its first 6 and 4
    digits. ``maker`` is the (importer, manufacturer) hash, 0 when none was given.
    ``rate_bp`` is the line's effective duty rate in basis points. ``log_uv`` is the
    natural log of the unit value, per unit of quantity (``basis`` 0) or else per kg
    (``basis`` 1); NaN when neither can be computed.
    """

    rows: np.ndarray
    importer: np.ndarray
    maker: np.ndarray
    day: np.ndarray
    center: np.ndarray
    country: np.ndarray
    port: np.ndarray
    value_cents: np.ndarray
    duty_cents: np.ndarray
    rate_bp: np.ndarray
    hts10: np.ndarray
    hts6: np.ndarray
    hts4: np.ndarray
    spi: np.ndarray
    log_uv: np.ndarray
    basis: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def line_fields(intake: Intake) -> LineFields:
    """The numbers of the accepted lines of an ingested batch (no copy: the kernel's parse)."""
    p = intake.parsed
    return LineFields(rows=p["rows"], importer=p["importer_hash"], maker=p["manufacturer_hash"], day=p["day"],
                      center=p["center"], country=p["country"], port=p["port"], value_cents=p["value_cents"],
                      duty_cents=p["duty_cents"], rate_bp=p["rate_bp"], hts10=p["hts"], hts6=p["hts6"],
                      hts4=p["hts4"], spi=p["spi"], log_uv=p["log_uv"], basis=p["basis"])
