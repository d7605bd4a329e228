"""Python-visible signatures of the Arrow column binder (_columns.pyx)."""

from typing import Any

class BatchView:
    length: int
    def __init__(self, batch: Any) -> None:
        """Imports a record batch through ``__arrow_c_array__`` and keeps it alive."""
