"""How tests run the ``ceecore`` command as a real process: on the very ceecore the tests
import (the installed package in CI; the source tree, built in place, in development)."""

from __future__ import annotations

import os
from pathlib import Path

import ceecore
import ceecore_cli

IMPORT_PATH = os.pathsep.join(dict.fromkeys(str(Path(m.__file__).resolve().parents[1]) for m in (ceecore, ceecore_cli)))


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m ceecore`` process that imports what the tests do."""
    given = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [IMPORT_PATH, given])), **extra}
