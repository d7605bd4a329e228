"""Python-visible signatures of the keyed-tally kernel (_tally.pyx)."""

from typing import Any

import numpy as np
import numpy.typing as npt

OPS: tuple[str, ...]

class Tally:
    folds: tuple[str, ...]
    def __init__(self, *folds: str) -> None:
        """An exact uint64 -> int64 fields table, each field folded by sum, min or max."""
    def add(self, keys: npt.NDArray[np.uint64], values: npt.NDArray[np.int64]) -> None: ...
    def get(self, keys: npt.NDArray[np.uint64], default: int = 0) -> npt.NDArray[np.int64]: ...
    def get_folded(self, keys: npt.NDArray[np.uint64], width: int, skip: npt.NDArray[np.int64] | None = None
                   ) -> npt.NDArray[np.int64]: ...
    def items(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]: ...
    def merge(self, other: Tally) -> None: ...
    def __len__(self) -> int: ...

def hash_strings(batch: Any, column: str) -> npt.NDArray[np.uint64]:
    """64-bit hashes of a string column (0 for null or empty)."""

def combine(tag: int, *columns: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """A 64-bit hash per row of (tag, columns...)."""
