"""Shared test fixtures.

Real-data tests use the WISDM subset found in ``$SMOOTHDISTILL_DATA`` or ``../shared/data`` and
skip with a reason when neither holds it. Everything else runs on fixtures written in the exact raw
formats, so the suite passes on a fresh machine with no network and no ``../shared``. ``tiny_net``
is the toy network of the models contract shared by the engine, method, EMA and checkpoint tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch import nn

from smoothdistill_lib import datasets
from smoothdistill_lib import download as dl

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


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache folder (``SMOOTHDISTILL_CACHE``): tests never read entries
    left by another test, and never fill the user's cache with entries for deleted temporary files."""
    monkeypatch.setenv("SMOOTHDISTILL_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def data(tmp_path, monkeypatch):
    """An isolated, offline data folder: the shared copy beside the checkout is not searched and
    downloads fail as they would without a network."""
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(tmp_path))
    monkeypatch.setattr(datasets, "search_dirs", lambda: [tmp_path])
    monkeypatch.setattr(dl.urllib.request, "urlopen", _offline)
    return tmp_path


def _offline(*args, **kwargs):
    raise dl.urllib.error.URLError("offline (test)")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder that holds ``wisdm-dataset/`` (real data), or skip."""
    root = _wisdm_root()
    if root is None:
        pytest.skip("real WISDM data not found: set SMOOTHDISTILL_DATA or place ../shared/data beside the repo")
    return root


class TinyNet(nn.Module):
    """Smallest net of the models contract: ``features`` then one Linear head per task.

    Input ``(N, 1, 3, length)``; ``hidden`` shared features; ``batchnorm`` adds a BatchNorm1d
    (running-statistics buffers) before the ReLU.
    """

    def __init__(self, n_classes=(4, 3), length: int = 12, hidden: int = 16, batchnorm: bool = False):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(3 * length, hidden)]
        layers += [nn.BatchNorm1d(hidden)] if batchnorm else []
        self.body = nn.Sequential(*layers, nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in n_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        f = self.features(x)
        return tuple(h(f) for h in self.heads)


@pytest.fixture
def tiny_net() -> type[TinyNet]:
    """The :class:`TinyNet` class (call it to build a net, or pass it as ``engine.fit(build=...)``)."""
    return TinyNet
