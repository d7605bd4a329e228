"""Where the real KCS customs declarations are: ``CEECORE_KCS_DIR``, else the workplace's
``../shared/data/kcs`` beside the repository. Tests on them skip, saying so, where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

KCS_ENV = "CEECORE_KCS_DIR"
KCS_DIR = Path(os.environ.get(KCS_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data" / "kcs")
KCS_TRAIN = KCS_DIR / "df_syn_train_eng.csv"
KCS_VALID = KCS_DIR / "df_syn_valid_eng.csv"
KCS_FOUND = KCS_TRAIN.exists() and KCS_VALID.exists()

needs_kcs = pytest.mark.skipif(
    not KCS_FOUND,
    reason=f"the real KCS data is not at {KCS_DIR} (set {KCS_ENV} to the folder holding df_syn_train_eng.csv "
           "and df_syn_valid_eng.csv): this real-data check is skipped")
