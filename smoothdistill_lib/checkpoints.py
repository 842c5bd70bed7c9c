"""Checkpoints: weights in ``<path>.pt``, everything else in ``<path>.json``, both written atomically.

- ``.pt`` holds ONLY state dicts (``{"student": {...}, "teacher": {...}}``: names -> tensors), so
  :func:`load` can use ``torch.load(..., weights_only=True)`` - no pickled code is ever executed.
- ``.json`` holds the metadata: the training config and its hash, best epoch, metrics, history,
  library versions, and the sha256 of the ``.pt`` it belongs to.

Each file is written to a temporary name in the same folder and moved into place with
``os.replace`` (atomic on POSIX and Windows), the ``.pt`` first: a crash leaves either the old pair
or a ``.pt`` whose hash the old ``.json`` does not match, which :func:`load` reports.

:func:`train_or_load` loads a checkpoint whose config hash matches, and otherwise trains and saves;
:func:`fit_or_load` is what chapters use: ``engine.fit`` or the cached result of an identical run,
keyed by the full training config and the data's identity. :func:`summary` reads the measured
numbers of a run back from its metadata, the same whether it was trained or loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from smoothdistill_lib import __version__, engine
from smoothdistill_lib.engine import TrainConfig, predict
from smoothdistill_lib.errors import CheckpointError
from smoothdistill_lib.fileio import atomic_write, json_hash, jsonable, sha256_file
from smoothdistill_lib.methods import get_method
from smoothdistill_lib.metrics import classification_metrics
from smoothdistill_lib.models import build_model
from smoothdistill_lib.splits import Standardizer
from smoothdistill_lib.windows import Windows, make_windows, to_layout


def _base(path: str | os.PathLike) -> Path:
    """``path`` without a ``.pt``/``.json`` suffix (either may be given)."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".pt", ".json") else p


def config_hash(config) -> str:
    """16-hex sha256 of the config's canonical JSON (a ``TrainConfig`` or a dict)."""
    return json_hash(config, 16)


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "smoothdistill_lib": __version__}


def _check_state_dicts(state_dicts) -> dict[str, dict[str, torch.Tensor]]:
    if not isinstance(state_dicts, Mapping) or not state_dicts:
        raise ValueError("checkpoints.save: state_dicts must be a non-empty dict name -> state dict")
    out = {}
    for name, sd in state_dicts.items():
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ValueError(f"checkpoints.save: state_dicts[{name!r}] must map names to tensors")
        out[str(name)] = {str(k): v.detach().cpu() for k, v in sd.items()}
    return out


def save(path: str | os.PathLike, state_dicts: Mapping, metadata: Mapping | None = None) -> Path:
    """Write ``<path>.pt`` (state dicts only) and ``<path>.json`` (metadata + versions); return the base path."""
    base = _base(path)
    sds = _check_state_dicts(state_dicts)
    pt, js = base.with_name(base.name + ".pt"), base.with_name(base.name + ".json")
    atomic_write(pt, lambda f: torch.save(sds, f), binary=True)
    meta = dict(jsonable(dict(metadata or {})))
    meta.update({"weights_file": pt.name, "weights_sha256": sha256_file(pt), "versions": versions(),
                 "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    atomic_write(js, lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True) + "\n"))
    return base


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """``(state_dicts, metadata)`` of a checkpoint; weights read with ``weights_only=True``."""
    base = _base(path)
    pt, js = base.with_name(base.name + ".pt"), base.with_name(base.name + ".json")
    for f in (pt, js):
        if not f.exists():
            raise FileNotFoundError(f"checkpoint file {f} not found (a checkpoint is a .pt + .json pair)")
    try:
        meta = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"checkpoint metadata {js} is not valid JSON (line {e.lineno}): delete it and retrain"
        ) from e
    if meta.get("weights_sha256") and meta["weights_sha256"] != sha256_file(pt):
        raise CheckpointError(f"checkpoint {pt} does not match the sha256 recorded in {js} (interrupted save?): "
                              "delete both files and retrain")
    try:
        state_dicts = torch.load(pt, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        # weights_only=True refuses pickled objects other than tensors and plain containers
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {pt} cannot be loaded with weights_only=True (it holds more than "
                              f"tensors, or is damaged): {first}. Only load files you trust; retrain to "
                              "replace it") from None
    return state_dicts, meta


def exists(path: str | os.PathLike) -> bool:
    base = _base(path)
    return base.with_name(base.name + ".pt").exists() and base.with_name(base.name + ".json").exists()


@dataclass
class Checkpoint:
    """What :func:`train_or_load` returns: its weights and metadata, whether it was loaded, its
    ``path`` (the base of the ``.pt`` + ``.json`` pair; :func:`load_predictor` takes it), and the
    ``FitResult`` when it trained now (else None)."""

    state_dicts: dict
    metadata: dict
    loaded: bool
    result: Any = None
    path: Path | None = None


def fit_metadata(result) -> dict:
    """JSON metadata of an ``engine.FitResult``: config, selection, timings, accuracies, history."""
    metrics = {}
    for split, who in result.predictions:
        a1, a2 = result.accuracy(split, who)
        metrics[f"{split}_acc_task1" if who == "student" else f"{who}_{split}_acc_task1"] = a1
        metrics[f"{split}_acc_task2" if who == "student" else f"{who}_{split}_acc_task2"] = a2
    return {
        "config": result.config, "best_epoch": result.best_epoch, "best_epochs": result.best_epochs,
        "train_seconds": result.train_seconds, "stage_seconds": result.stage_seconds,
        "n_params": result.n_params, "n_classes": list(result.n_classes), "device": result.device,
        "metrics": metrics, "history": result.history.to_dict(orient="records"),
    }


def train_or_load(path: str | os.PathLike, train_fn: Callable[[], Any], config, *,
                  metadata: Mapping | None = None) -> Checkpoint:
    """Load ``path`` if its config hash equals ``config_hash(config)``; else ``train_fn()`` and save.

    ``train_fn()`` returns an ``engine.FitResult`` (saved with :func:`fit_metadata`) or a
    ``(state_dicts, metadata)`` pair. The config hash is stored in the metadata as ``config_hash``;
    ``metadata`` (optional) is added to what is saved.
    """
    want = config_hash(config)
    if exists(path):
        state_dicts, meta = load(path)
        if meta.get("config_hash") == want:
            return Checkpoint(state_dicts, meta, loaded=True, path=_base(path))
    out = train_fn()
    if hasattr(out, "state_dicts") and hasattr(out, "history"):
        state_dicts, meta, result = out.state_dicts, fit_metadata(out), out
    elif isinstance(out, tuple) and len(out) == 2:
        (state_dicts, meta), result = out, None
    else:
        raise ValueError("train_or_load: train_fn must return a FitResult or a (state_dicts, metadata) pair")
    meta = {"config": config, **dict(meta), **dict(metadata or {}), "config_hash": want}
    save(path, state_dicts, meta)
    _, saved_meta = load(path)
    return Checkpoint(_check_state_dicts(state_dicts), saved_meta, loaded=False, result=result, path=_base(path))


# --------------------------------------------------------------------------------------------
# fit or load: what chapters 6 and 7 use


def _arrays(data) -> dict[str, Any]:
    """``X``, ``y1``, ``y2`` of anything ``engine.fit`` accepts (Windows, Prepared, tuple, dict)."""
    data = getattr(data, "windows", data)  # pipeline.Prepared -> its Windows
    if isinstance(data, Mapping):
        return {k: data[k] for k in ("X", "y1", "y2")}
    if isinstance(data, tuple | list) and len(data) == 3:
        return dict(zip(("X", "y1", "y2"), data, strict=True))
    if all(hasattr(data, k) for k in ("X", "y1", "y2")):
        return {k: getattr(data, k) for k in ("X", "y1", "y2")}
    raise ValueError(f"fit_or_load: data must be Windows, Prepared, (X, y1, y2) or a dict, got {type(data).__name__}")


def data_fingerprint(data, *indices) -> str:
    """16-hex sha256 of the data's ``X``, ``y1``, ``y2`` (dtype, shape and bytes) and of ``indices``.

    Two runs with equal fingerprints saw exactly the same windows, labels and index sets (``None``
    indices count as empty). Hashing the arrays, not a description of them, also catches a changed
    loader or simulator behind unchanged options.
    """
    h = hashlib.sha256()
    parts = list(_arrays(data).items()) + [(f"idx{k}", np.asarray([] if a is None else a, dtype=np.int64))
                                          for k, a in enumerate(indices)]
    for name, a in parts:
        a = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data)  # the buffer itself: no copy of a large X
    return h.hexdigest()[:16]


def fit_or_load(directory: str | os.PathLike, data, fit_idx, val_idx, test_idx, config, *,
                data_options: Mapping | None = None, name: str | None = None, progress: bool = True,
                **fit_kwargs) -> Checkpoint:
    """``engine.fit(data, fit_idx, val_idx, test_idx, config)``, or load the checkpoint of an identical run.

    The checkpoint ``<directory>/<name>_<hash>`` (``name`` defaults to ``config.method``) is keyed
    by the full ``TrainConfig``, ``data_options`` (default: ``data.options`` of a
    ``pipeline.Prepared``, else none), a :func:`data_fingerprint` of the data and the three index
    sets, and the name of a custom ``build`` in ``fit_kwargs``. So a changed mode, dataset, fold,
    decay or any other hyperparameter trains anew and never loads a stale run. Weights are saved
    atomically and loaded with ``weights_only=True`` (:func:`save`, :func:`load`); the metadata
    also holds ``n_fit``, ``n_val``, ``n_test`` and ``data_options`` (for :func:`summary`), and
    ``inputs`` (:func:`input_spec`: window options, layout, channels, class names and the fitted
    standardiser of a ``Prepared``), so that :func:`load_predictor` can score new recordings.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"fit_or_load: config must be an engine.TrainConfig, got {type(config).__name__}")
    if data_options is None:
        data_options = getattr(data, "options", None) or {}
    build = fit_kwargs.get("build")
    key = {
        "train": config.to_dict(),
        "data": dict(data_options),
        "data_sha256": data_fingerprint(data, fit_idx, val_idx, test_idx),
        "build": None if build is None else f"{build.__module__}.{build.__qualname__}",
        "n_classes": fit_kwargs.get("n_classes"),
    }
    sizes = {"n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": 0 if test_idx is None else len(test_idx)}
    path = Path(directory) / f"{name or config.method}_{config_hash(key)}"
    return train_or_load(path, lambda: engine.fit(data, fit_idx, val_idx, test_idx, config, progress=progress, **fit_kwargs),
                         key, metadata={**sizes, "data_options": dict(data_options), "inputs": input_spec(data),
                                   "build": key["build"]})


def summary(checkpoint: Checkpoint) -> dict:
    """Measured numbers of a :func:`fit_or_load` run, read from its metadata (trained or loaded alike).

    Times: ``train time (s)`` is the measured wall time of all epochs; ``train time, median-based
    (s)`` replaces each epoch's time by its stage's median epoch time (robust to the one-off start-up
    cost that the first run in a process pays); ``s per epoch`` and ``ms per step`` are the last
    stage's median (born_again: the student; they include the per-epoch validation).
    """
    meta = checkpoint.metadata
    missing = [k for k in ("history", "config", "stage_seconds", "metrics", "n_fit") if k not in meta]
    if missing:
        raise ValueError(f"summary: checkpoint metadata lacks {missing}; was it written by fit_or_load?")
    hist = pd.DataFrame(meta["history"])
    steps = math.ceil(meta["n_fit"] / meta["config"]["batch_size"])
    per_stage = hist.groupby("stage")["epoch_seconds"].agg(["median", "size"])
    last_stage = float(per_stage["median"].iloc[-1])
    per_net = 2 if get_method(meta["config"]["method"]).single_task else 1
    metrics = meta["metrics"]
    return {
        "networks trained": len(meta["stage_seconds"]) * per_net,
        "parameters (inference)": meta["n_params"],
        "epochs run": len(hist),
        "train time (s)": meta["train_seconds"],
        "train time, median-based (s)": float((per_stage["median"] * per_stage["size"]).sum()),
        "s per epoch": last_stage,
        "ms per step": 1000 * last_stage / steps,
        "best epoch": meta["best_epoch"],
        **{f"{split} acc task {k}": metrics.get(f"{split}_acc_task{k}", float("nan"))
           for split in ("val", "test") for k in (1, 2)},
        "device": meta["device"],
        "loaded": checkpoint.loaded,
    }


def describe(name: str, checkpoint: Checkpoint) -> str:
    """Two lines about a run: what was trained, how long it took, and how well it did."""
    r = summary(checkpoint)
    how = "loaded from a checkpoint of an identical earlier run" if r["loaded"] else "trained now"
    return (f"{name} ({how}, on {r['device']}): {r['networks trained']} network(s), "
            f"{r['parameters (inference)']:,} parameters at inference; {r['epochs run']} epochs in "
            f"{r['train time (s)']:.1f} s ({r['s per epoch']:.2f} s per epoch (median), {r['ms per step']:.0f} ms "
            f"per step); best epoch {r['best epoch']}\n"
            f"  accuracy (%) task 1 / task 2: validation {r['val acc task 1']:.1f} / {r['val acc task 2']:.1f}, "
            f"test {r['test acc task 1']:.1f} / {r['test acc task 2']:.1f}")


# --------------------------------------------------------------------------------------------
# scoring new recordings with a saved checkpoint


def input_spec(data) -> dict | None:
    """What a checkpoint needs to turn a new recording into the inputs it was trained on: the window
    options (``length``, ``step``, ``stream``, ``label_rule``, ``layout``), ``channels``, the class
    names of both tasks and the fitted standardiser (``None``: the windows were used as given).
    None when ``data`` is not a ``Windows`` / ``pipeline.Prepared`` (plain arrays say none of this)."""
    w = getattr(data, "windows", data)
    if not isinstance(w, Windows):
        return None
    std = getattr(data, "standardizer", None)
    return {"length": w.length, "step": w.step, "stream": w.stream, "label_rule": w.label_rule,
            "layout": w.layout, "channels": list(w.channels), "activity_names": list(w.activity_names),
            "placement_names": list(w.placement_names), "dataset": w.dataset,
            "standardizer": None if std is None else std.to_dict()}


@dataclass
class Predictor:
    """A trained network loaded from a checkpoint, with what it needs to score new recordings.

    ``models``: ``{"student": net}`` or ``{"task1": net, "task2": net}`` (single-task), eval mode;
    ``inputs``: :func:`input_spec` of the training data; ``path``: the checkpoint's base path.
    """

    path: Path
    models: dict[str, torch.nn.Module]
    inputs: dict
    metadata: dict

    def windows(self, recording) -> Windows:
        """Windows of a new :class:`~smoothdistill_lib.recordings.Recording`, cut, labelled and laid
        out exactly as the training windows were (standardisation is applied in :meth:`predict`)."""
        i = self.inputs
        for what in ("channels", "activity_names", "placement_names"):
            if list(getattr(recording, what)) != list(i[what]):
                raise ValueError(f"checkpoint {self.path}: trained on {what} {i[what]}, the recording has "
                                 f"{list(getattr(recording, what))}")
        return make_windows(recording, length=i["length"], step=i["step"], stream=i["stream"],
                            label_rule=i["label_rule"], layout=i["layout"])

    def predict(self, data) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels ``(y1, y2)`` (each ``(N,)`` int64) for a Recording or Windows; windows in
        another layout are converted, then scaled by the training standardiser."""
        w = self.windows(data) if not isinstance(data, Windows) else data
        X = to_layout(w.X, w.layout, self.inputs["layout"])
        if X.shape[2] != len(self.inputs["channels"]) or X.shape[3] != self.inputs["length"]:
            raise ValueError(f"checkpoint {self.path}: expects windows (N, 1, {len(self.inputs['channels'])}, "
                             f"{self.inputs['length']}), got {tuple(X.shape)}")
        if self.inputs["standardizer"] is not None:
            X = Standardizer.from_dict(self.inputs["standardizer"]).transform(X)
        if "student" in self.models:
            z1, z2 = predict(self.models["student"], X)
        else:
            z1, z2 = predict(self.models["task1"], X)[0], predict(self.models["task2"], X)[0]
        return z1.argmax(axis=1), z2.argmax(axis=1)

    def score(self, data) -> pd.DataFrame:
        """Accuracy and macro-F1 (percent) of both tasks on a labelled Recording or Windows:
        rows ``task1``, ``task2``; columns ``accuracy``, ``macro_f1``, ``n``."""
        w = self.windows(data) if not isinstance(data, Windows) else data
        p1, p2 = self.predict(w)
        rows = {}
        for task, y, p, names in ((1, w.y1, p1, "activity_names"), (2, w.y2, p2, "placement_names")):
            m = classification_metrics(y, p, n_classes=len(self.inputs[names]))
            rows[f"task{task}"] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": len(y)}
        return pd.DataFrame.from_dict(rows, orient="index")


def load_predictor(path: str | os.PathLike | Checkpoint, map_location: str | torch.device = "cpu") -> Predictor:
    """The network of a :func:`fit_or_load` checkpoint (its selected, best-epoch weights), rebuilt
    from the saved config and ready to score recordings of subjects it never saw."""
    base = path.path if isinstance(path, Checkpoint) else _base(path)
    state_dicts, meta = load(base, map_location)
    inputs, cfg = meta.get("inputs"), meta.get("config") or {}  # cfg: the TrainConfig it ran
    if not inputs:
        raise CheckpointError(f"checkpoint {base}: its metadata has no 'inputs' (trained on plain arrays, or "
                              "saved before checkpoints kept them): retrain it with fit_or_load on Windows")
    if meta.get("build"):
        raise CheckpointError(f"checkpoint {base}: trained with a custom build function "
                              f"({meta['build']}); rebuild that net and load_state_dict yourself")
    n1, n2 = len(inputs["activity_names"]), len(inputs["placement_names"])
    opts = {"n_channels": len(inputs["channels"]), "window_length": inputs["length"],
            **(cfg.get("model_options") or {})}
    heads = {"task1": (n1,), "task2": (n2,)} if "task1" in state_dicts else {"student": (n1, n2)}
    models = {}
    for name, nc in heads.items():
        net = build_model(cfg["model"], nc, **opts)
        net.load_state_dict(state_dicts[name])
        models[name] = net.eval()
    return Predictor(base, models, inputs, meta)
