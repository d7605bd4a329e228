"""Python-visible signatures of the score-combining kernel (_scores.pyx)."""

import numpy as np
import numpy.typing as npt

def combine(
    contribution: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Score 1 - prod(1 - c), the k largest contributions' columns and how many are above 0, per row."""
