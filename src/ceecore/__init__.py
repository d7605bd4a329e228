"""ceecore: a compiled customs risk-scoring core, organised like CBP's Centers.

Entry lines stream in as Arrow record batches; compiled kernels consolidate them per
importer account nationwide, assign each account to its Center of Excellence and
Expertise, build industry baselines, and score every line and account against them.
"""

__version__ = "0.1.0"

import os  # noqa: E402

# The kernels' OpenMP threads wait passively between batches instead of spinning: a
# spinning pool takes the cores the other worker threads (and other processes) need.
# Read once, when the first OpenMP runtime loads; a caller's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ceecore.accounts import CONSOLIDATION_COLUMNS, AccountBook  # noqa: E402 (the version comes first)
from ceecore.centers import Center, CenterMap, Override, load_overrides  # noqa: E402
from ceecore.evaluate import evaluate  # noqa: E402
from ceecore.pipeline import (  # noqa: E402
    Consolidation, IntakeStats, Labels, RunSummary, consolidate, fit, merge_models, run, run_consolidation, score,
    score_period,
)
from ceecore.privacy import Pseudonymiser  # noqa: E402
from ceecore.schema import CANONICAL, REJECT_REASONS, REQUIRED, ColumnMapping, ContractError  # noqa: E402
from ceecore.scoring import Model, Scorer, ScoringConfig, load_model  # noqa: E402
from ceecore.trends import Trends, trends  # noqa: E402
from ceecore.uniformity import Uniformity, read_uniformity, uniformity  # noqa: E402

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
    "Labels",
    "Model",
    "Override",
    "Pseudonymiser",
    "REJECT_REASONS",
    "REQUIRED",
    "RunSummary",
    "Scorer",
    "ScoringConfig",
    "Trends",
    "Uniformity",
    "consolidate",
    "evaluate",
    "fit",
    "load_model",
    "load_overrides",
    "merge_models",
    "run",
    "read_uniformity",
    "run_consolidation",
    "score",
    "score_period",
    "trends",
    "uniformity",
]


def __getattr__(name: str) -> object:
    """``ceecore.cluster`` (the jobs on Dask) is imported, with Dask, only when asked for."""
    if name == "cluster":
        import importlib
        return importlib.import_module("ceecore.cluster")
    raise AttributeError(f"module 'ceecore' has no attribute {name!r}")
