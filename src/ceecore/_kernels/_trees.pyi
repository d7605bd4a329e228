"""Python-visible signatures of the tree-scoring kernel (_trees.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt

def predict(
    X: npt.NDArray[np.float64], feature: npt.NDArray[np.int64], threshold: npt.NDArray[np.float64],
    missing_left: npt.NDArray[np.uint8], left: npt.NDArray[np.int64], right: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64], roots: npt.NDArray[np.int64], baseline: float, contributions: bool = False,
) -> Any:
    """Raw scores per row (and each feature's contributions, if asked)."""
