"""Python-visible signatures of the period views' fold kernels (_views.pyx)."""

import numpy as np
import numpy.typing as npt

from ceecore._kernels._tally import Tally

class KeyFold:
    n: int
    width: int
    bin_offset: int
    def __init__(self, width: int, bin_offset: int) -> None: ...
    def add(self, hashes: npt.NDArray[np.uint64], k1: npt.NDArray[np.int64], k2: npt.NDArray[np.int64],
            columns: list[npt.NDArray[np.int64] | None], hist_row: npt.NDArray[np.int64],
            hist_field: npt.NDArray[np.int64], hist_bin: npt.NDArray[np.int64], hist_count: npt.NDArray[np.int64],
            imp_row: npt.NDArray[np.int64], imp_hash: npt.NDArray[np.int64]) -> None: ...
    def keys(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def counts(self, order: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def take_histogram(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]: ...
    def take_importers(self) -> npt.NDArray[np.int64]: ...

def months(day: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The month index (0 = January 1900) of each day since 1970-01-01."""

def fold_trends(month: Tally | None, origin: Tally | None, entry: Tally | None, account: Tally | None,
                span: Tally | None, rows: npt.NDArray[np.int64], center: npt.NDArray[np.int64],
                day: npt.NDArray[np.int64], hts6: npt.NDArray[np.int64], country: npt.NDArray[np.int64],
                importer: npt.NDArray[np.uint64], entry_hash: npt.NDArray[np.uint64],
                value_cents: npt.NDArray[np.int64], duty_cents: npt.NDArray[np.int64],
                outcomes: list[npt.NDArray[np.int64]]) -> None:
    """Folds the lines ``rows`` into the trends' tallies given (None: not folded)."""
