"""Python-visible signatures of the compiled account kernel (_accounts.pyx)."""

from typing import Any

import numpy as np

REJECT_REASONS: tuple[str, ...]
ACCOUNT_DTYPE: np.dtype
PARSED_COLUMNS: dict[str, type]

class AccountKernel:
    n_shards: int
    n_centers: int
    def __init__(self, n_shards: int, n_centers: int, epoch_starts: np.ndarray, center_table: np.ndarray) -> None: ...
    def update(self, batch: Any, prechecked: np.ndarray, threads: int, fold: bool = True) -> np.ndarray:
        """Checks and folds (unless not ``fold``) one canonical batch; returns the reject code per row."""
    def parsed(self, batch: Any, codes: np.ndarray) -> dict[str, np.ndarray]:
        """The last update's parse of the accepted rows of ``batch`` (see PARSED_COLUMNS)."""
    def account_views(self, k: int) -> dict[str, np.ndarray]:
        """Views of kernel memory, valid until the next update or absorb."""
    def export_keys(self, k: int) -> dict[str, np.ndarray]: ...
    def absorb(
        self, importers: Any, accounts: np.ndarray, center_lines: np.ndarray, center_cents: np.ndarray,
        entry_row: np.ndarray, entries: np.ndarray, manufacturer_row: np.ndarray, manufacturers: np.ndarray,
        port_row: np.ndarray, port_code: np.ndarray,
    ) -> None: ...
