"""Python-visible signatures of the fused scoring kernel (_indicators.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt

INDICATOR_IDS: dict[str, int]
RAW_IDS: dict[str, int]
THRESHOLDS: tuple[str, ...]
LOOKUPS: tuple[str, ...]

class ScoringContext:
    def __init__(self, lookups: dict[str, Any], thresholds: dict[str, float], weights: dict[str, float],
                 min_group_lines: int, bin_width: float, first_day: int) -> None:
        """A model's lookups, thresholds and weights, bound for the kernel (read-only)."""

def score_lines(
    context: ScoringContext, importer: npt.NDArray[np.uint64], maker: npt.NDArray[np.uint64],
    day: npt.NDArray[np.int64], country: npt.NDArray[np.int64], port: npt.NDArray[np.int64],
    rate_bp: npt.NDArray[np.int64], hts10: npt.NDArray[np.int64], hts6: npt.NDArray[np.int64],
    hts4: npt.NDArray[np.int64], spi: npt.NDArray[np.int64], log_uv: npt.NDArray[np.float64],
    basis: npt.NDArray[np.int64], value_cents: npt.NDArray[np.int64], reasons: int = -1,
) -> tuple[npt.NDArray[Any], ...]:
    """(strengths, raw) of the lines; with reasons >= 0 also (score, top, fired)."""

def score_accounts(context: ScoringContext, importers: npt.NDArray[np.uint64]
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Strengths and raw values of the account-level indicators per importer hash."""
