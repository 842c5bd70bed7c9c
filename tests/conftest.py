"""Shared test fixtures.

Real-data tests use the WISDM subset found in ``$SMOOTHDISTILL_DATA`` or ``../shared/data`` and
skip with a reason when neither holds it. Everything else runs on fixtures written in the exact raw
formats, so the suite passes on a fresh machine with no network and no ``../shared``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _wisdm_root() -> Path | None:
    candidates = []
    if os.environ.get("SMOOTHDISTILL_DATA"):
        candidates.append(Path(os.environ["SMOOTHDISTILL_DATA"]))
    candidates.append(ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "wisdm-dataset" / "raw" / "phone" / "accel").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder that holds ``wisdm-dataset/`` (real data), or skip."""
    root = _wisdm_root()
    if root is None:
        pytest.skip("real WISDM data not found: set SMOOTHDISTILL_DATA or place ../shared/data beside the repo")
    return root
