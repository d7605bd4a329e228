"""What an indicator declares: the registry (``ceecore.indicators``) derives the rest from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ceecore._kernels._tally import Tally

__all__ = ["Indicator", "Lookup", "LookupBuilder"]

# A lookup scoring reads beside the fitted tallies: a table, an array or a number
# derived from them when a model is built (the industry's norms, say).
Lookup = Union[Tally, np.ndarray, float]
# Builds lookups from the fitted tallies (by name) and the config's thresholds.
LookupBuilder = Callable[[Mapping[str, Tally], Mapping[str, float]], dict[str, Lookup]]


@dataclass(frozen=True)
class Indicator:
    """One risk indicator: what it is, what it reads and what it reports.

    ``tallies`` are the baselines it reads (``fit`` builds them only while it is on);
    ``lookups`` builds what it reads beyond them when a model is built; ``raw`` are
    the values behind its strength (output columns, NaN where not computed);
    ``thresholds`` the config keys it reads; ``account_level`` marks an indicator of
    the whole account (scored per account too; on a line its strength is the
    account's, or weighed by the line's own evidence as ``new_importer``'s is). Its
    computation is the kernel function of the same name in ``_kernels/_indicators.pyx``.
    """

    name: str
    doc: str
    tallies: tuple[str, ...]
    raw: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    account_level: bool = False
    lookups: LookupBuilder | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "doc": self.doc, "tallies": list(self.tallies), "raw": list(self.raw),
                "thresholds": list(self.thresholds), "account_level": self.account_level}
