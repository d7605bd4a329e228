"""ceecore: a compiled customs risk-scoring core, organised like CBP's Centers.

Entry lines stream in as Arrow record batches; compiled kernels consolidate them per
importer account nationwide and assign each account to its Center of Excellence and
Expertise.
"""

from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook
from ceecore.centers import Center, CenterMap, Override, load_overrides
from ceecore.pipeline import Consolidation, IntakeStats, consolidate, run_consolidation
from ceecore.schema import CANONICAL, REJECT_REASONS, REQUIRED, ColumnMapping, ContractError

__version__ = "0.1.0"

__all__ = [
    "AccountBook",
    "CANONICAL",
    "CONSOLIDATION_COLUMNS",
    "Center",
    "CenterMap",
    "ColumnMapping",
    "Consolidation",
    "ContractError",
    "IntakeStats",
    "Override",
    "REJECT_REASONS",
    "REQUIRED",
    "consolidate",
    "load_overrides",
    "run_consolidation",
]
