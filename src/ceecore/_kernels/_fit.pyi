"""Python-visible signatures of the fused fitting kernel (_fit.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt

FIT_TALLIES: tuple[str, ...]

def fit_lines(
    tallies: tuple[Any, ...], importer: npt.NDArray[np.uint64], maker: npt.NDArray[np.uint64],
    day: npt.NDArray[np.int64], country: npt.NDArray[np.int64], port: npt.NDArray[np.int64],
    value_cents: npt.NDArray[np.int64], duty_cents: npt.NDArray[np.int64], rate_bp: npt.NDArray[np.int64],
    hts10: npt.NDArray[np.int64], hts6: npt.NDArray[np.int64], hts4: npt.NDArray[np.int64],
    spi: npt.NDArray[np.int64], log_uv: npt.NDArray[np.float64], basis: npt.NDArray[np.int64],
    log_low: float, bin_width: float, n_bins: int, threads: int = 1,
) -> None:
    """Folds the lines into the tallies (FIT_TALLIES order, None for those not built)."""
