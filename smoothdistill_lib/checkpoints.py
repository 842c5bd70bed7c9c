"""Checkpoints: weights in ``<path>.pt``, everything else in ``<path>.json``, both written atomically.

- ``.pt`` holds ONLY state dicts (``{"student": {...}, "teacher": {...}}``: names -> tensors), so
  :func:`load` can use ``torch.load(..., weights_only=True)`` - no pickled code is ever executed.
- ``.json`` holds the metadata: the training config and its hash, best epoch, metrics, history,
  library versions, and the sha256 of the ``.pt`` it belongs to.

Each file is written to a temporary name in the same folder and moved into place with
``os.replace`` (atomic on POSIX and Windows), the ``.pt`` first: a crash leaves either the old pair
or a ``.pt`` whose hash the old ``.json`` does not match, which :func:`load` reports.

The two files must belong together, or a network would score with the wrong weights, shapes or
scaling. :func:`save` (format :data:`FORMAT`) writes into the ``.json`` each network's tensor names,
shapes and a content hash (``state``); :func:`load` checks the ``.pt`` against them and against the
``.pt``'s sha256; :func:`load_predictor` checks the model, its head sizes against the class names,
every tensor against a net built from the ``.json``, and a complete standardiser. Each mismatch is
ONE line, a :class:`~smoothdistill_lib.errors.CheckpointError`. Checkpoints saved before the format
(no ``format`` key) keep loading as they did; they are checked where they can be.

A run of a grid keeps its networks (:func:`save_networks`): ``runs/networks/<run_id>.student`` and
``.teacher`` (the methods that have one), each a self-contained pair, with their sha256 in the run's
record. ``load_predictor("results/<exp>/runs/<run_id>", network="teacher")`` and the command line
``score`` (:func:`cli_score`) score either on new subjects.

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
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from smoothdistill_lib import __version__, datasets, engine
from smoothdistill_lib.engine import TrainConfig, predict
from smoothdistill_lib.errors import CheckpointError, UserError
from smoothdistill_lib.fileio import atomic_write, json_hash, jsonable, sha256_file
from smoothdistill_lib.methods import get_method
from smoothdistill_lib.metrics import classification_metrics
from smoothdistill_lib.models import MODELS, build_model
from smoothdistill_lib.pipeline import check_recording
from smoothdistill_lib.splits import Standardizer
from smoothdistill_lib.windows import LAYOUTS, Windows, make_windows, to_layout

#: the checkpoint format :func:`save` writes: the ``.json`` describes every tensor of the ``.pt``
#: (``state``) and a standardiser is always recorded. Checkpoints without ``format`` predate it.
FORMAT = 2
#: the networks a checkpoint can be asked for (``load_predictor(..., network=)``)
NETWORKS = ("student", "teacher")
#: a run's networks, inside its runs folder (``runs/networks/<run_id>.<network>.pt`` + ``.json``):
#: a folder of their own, so that no checkpoint ``.json`` is ever taken for a run record
NETWORKS_DIR = "networks"


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


def state_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 of a state dict's contents: each tensor's name, dtype, shape and bytes, in name
    order. Unlike the ``.pt``'s sha256 it does not depend on how torch serialised the file, so the
    ``.json`` can say which weights it describes."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype, bf16 included
    return h.hexdigest()


def _state_layout(sds: Mapping[str, Mapping[str, torch.Tensor]]) -> dict:
    """``{network: {"shapes": {tensor: [dims]}, "sha256": state_hash}}``: what the ``.json`` records
    of the ``.pt``."""
    return {name: {"shapes": {k: list(v.shape) for k, v in sd.items()}, "sha256": state_hash(sd)}
            for name, sd in sds.items()}


def save(path: str | os.PathLike, state_dicts: Mapping, metadata: Mapping | None = None) -> Path:
    """Write ``<path>.pt`` (state dicts only) and ``<path>.json`` (metadata + versions + the layout
    and content hash of every network, ``state``); return the base path."""
    base = _base(path)
    sds = _check_state_dicts(state_dicts)
    pt, js = base.with_name(base.name + ".pt"), base.with_name(base.name + ".json")
    atomic_write(pt, lambda f: torch.save(sds, f), binary=True)
    meta = dict(jsonable(dict(metadata or {})))
    meta.update({"format": FORMAT, "state": _state_layout(sds), "weights_file": pt.name,
                 "weights_sha256": sha256_file(pt), "versions": versions(),
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
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata {js} is not a JSON object: delete both files and retrain")
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
    if not (isinstance(state_dicts, Mapping) and state_dicts and all(
            isinstance(sd, Mapping) and all(isinstance(v, torch.Tensor) for v in sd.values())
            for sd in state_dicts.values())):
        raise CheckpointError(f"checkpoint {pt} does not hold state dicts (network name -> tensor name -> tensor): "
                              "it was not written by checkpoints.save; retrain to replace it")
    _check_state(pt, js, state_dicts, meta.get("state"))
    return state_dicts, meta


def _check_state(pt: Path, js: Path, state_dicts: Mapping, state) -> None:
    """The ``.pt``'s networks against what the ``.json`` records of them (format 2; earlier
    checkpoints record nothing): the same networks, tensor names and shapes, and contents (a
    ``.pt`` from another run whose sha256 was copied into the ``.json`` is caught here)."""
    if state is None:
        return
    fix = f"the .pt and {js.name} do not belong together; delete both and retrain"
    if not isinstance(state, dict) or sorted(state) != sorted(state_dicts):
        listed = sorted(state) if isinstance(state, dict) else state
        raise CheckpointError(f"checkpoint {pt} holds networks {sorted(state_dicts)}, its .json lists {listed}: {fix}")
    for name, sd in state_dicts.items():
        shapes = (state[name] or {}).get("shapes") if isinstance(state[name], dict) else None
        if not isinstance(shapes, dict):
            raise CheckpointError(f"checkpoint metadata {js}: state[{name!r}] lists no tensor shapes: {fix}")
        missing, extra = sorted(set(shapes) - set(sd)), sorted(set(sd) - set(shapes))
        if missing or extra:
            what = "; ".join(p for p in (f"lacks {missing[:3]}" if missing else "",
                                         f"has unlisted {extra[:3]}" if extra else "") if p)
            raise CheckpointError(f"checkpoint {pt}: network {name!r} {what} (tensor names differ from {js.name}'s): {fix}")
        for k, t in sd.items():
            if list(t.shape) != list(shapes[k]):
                raise CheckpointError(f"checkpoint {pt}: tensor {k!r} of network {name!r} is {list(t.shape)}, "
                                      f"{js.name} says {shapes[k]}: {fix}")
        if state[name].get("sha256") != state_hash(sd):
            raise CheckpointError(f"checkpoint {pt}: the weights of network {name!r} are not the ones {js.name} "
                                  f"describes (content hash differs; weights of another run?): {fix}")


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
    build = fit_kwargs.get("build")
    if build is None:  # before the cache is read: a run on mismatched windows is never loaded either
        engine.check_layout(data, config.model, who="fit_or_load")
    if data_options is None:
        data_options = getattr(data, "options", None) or {}
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
                                   "build": key["build"], "subjects_seen": subjects_seen(data, fit_idx, val_idx)})


def subjects_seen(data, fit_idx, val_idx) -> list[int] | None:
    """Sorted subjects of the fit and validation windows (those a network learnt or was selected
    on), or None when ``data`` carries no subjects (plain arrays). ``score`` warns when asked to
    score one of them."""
    w = getattr(data, "windows", data)
    if not isinstance(w, Windows):
        return None
    idx = np.concatenate([np.asarray(fit_idx, dtype=np.int64), np.asarray(val_idx, dtype=np.int64)])
    return sorted(int(s) for s in np.unique(w.subject[idx]))


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


#: the keys of :func:`input_spec` a checkpoint must hold to score a recording
INPUT_KEYS = ("length", "step", "stream", "label_rule", "layout", "channels", "activity_names",
              "placement_names", "standardizer")


def input_spec(data) -> dict | None:
    """What a checkpoint needs to turn a new recording into the inputs it was trained on: the window
    options (``length``, ``step``, ``stream``, ``label_rule``, ``layout``), ``channels``, the class
    names of both tasks and the fitted standardiser (the identity when ``data`` are windows used as
    given). None when ``data`` is not a ``Windows`` / ``pipeline.Prepared`` (plain arrays say none
    of this)."""
    w = getattr(data, "windows", data)
    if not isinstance(w, Windows):
        return None
    std = getattr(data, "standardizer", None)
    if std is None:  # windows used as given: recorded as the identity, so a standardiser is never null
        std = Standardizer.identity(w.layout, len(w.channels))
    return {"length": w.length, "step": w.step, "stream": w.stream, "label_rule": w.label_rule,
            "layout": w.layout, "channels": list(w.channels), "activity_names": list(w.activity_names),
            "placement_names": list(w.placement_names), "dataset": w.dataset, "standardizer": std.to_dict()}


@dataclass
class Predictor:
    """A trained network loaded from a checkpoint, with what it needs to score new recordings.

    ``models``: ``{"student": net}``, ``{"teacher": net}`` or ``{"task1": net, "task2": net}``
    (single-task), eval mode; ``inputs``: :func:`input_spec` of the training data; ``path``: the
    checkpoint's base path; ``network``: ``"student"`` or ``"teacher"``.
    """

    path: Path
    models: dict[str, torch.nn.Module]
    inputs: dict
    metadata: dict
    network: str = "student"

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
        if self.inputs["standardizer"] is not None:  # None: a checkpoint saved before format 2
            X = Standardizer.from_dict(self.inputs["standardizer"]).transform(X)
        if "task1" in self.models:
            z1, z2 = predict(self.models["task1"], X)[0], predict(self.models["task2"], X)[0]
        else:  # one two-head network: the student or the teacher
            (net,) = self.models.values()
            z1, z2 = predict(net, X)
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


def load_predictor(path: str | os.PathLike | Checkpoint, map_location: str | torch.device = "cpu", *,
                   network: str = "student") -> Predictor:
    """The ``network`` (``"student"``, the default, or ``"teacher"``) of a checkpoint, at its
    selected weights, rebuilt from the saved config and ready to score recordings of subjects it
    never saw.

    ``path``: a :func:`fit_or_load` checkpoint (its base, ``.pt`` or ``.json``, or the
    :class:`Checkpoint`), a network file of a run (:func:`save_networks`), or a run of a grid,
    ``results/<exp>/runs/<run_id>``: its record names the file and sha256 of each network.
    Everything that could make it score with the wrong network is refused in one line
    (:class:`~smoothdistill_lib.errors.CheckpointError`): the model, each tensor's name and shape
    against a net built from the ``.json``, the heads against the class names, and a complete
    standardiser."""
    if network not in NETWORKS:
        raise UserError(f"load_predictor: network={network!r}; choose one of {', '.join(NETWORKS)}")
    base = path.path if isinstance(path, Checkpoint) else _base(path)
    base = _run_network(base, network) or base
    state_dicts, meta = load(base, map_location)
    pt = base.with_name(base.name + ".pt")
    if meta.get("build"):
        raise CheckpointError(f"checkpoint {base}: trained with a custom build function "
                              f"({meta['build']}); rebuild that net and load_state_dict yourself")
    js = base.with_name(base.name + ".json")
    inputs = _checked_inputs(base, meta)
    cfg = meta.get("config")  # the TrainConfig it ran
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), str):
        raise CheckpointError(f"checkpoint metadata {js} has no training config ('config' naming the model): the "
                              "network cannot be rebuilt; retrain it")
    if cfg["model"] not in MODELS:
        raise CheckpointError(f"checkpoint metadata {js}: model {cfg['model']!r} is not registered (import the module "
                              f"that registers it); models: {', '.join(MODELS)}")
    n1, n2 = len(inputs["activity_names"]), len(inputs["placement_names"])
    recorded = meta.get("n_classes")
    if isinstance(recorded, list) and len(recorded) == 2 and list(recorded) != [n1, n2]:
        raise CheckpointError(f"checkpoint metadata {js}: the network has {recorded[0]} + {recorded[1]} outputs, "
                              f"'inputs' names {n1} activity_names and {n2} placement_names: the .pt and .json do not "
                              "belong together")
    if network == "teacher":
        if "teacher" not in state_dicts:
            raise CheckpointError(f"checkpoint {pt} holds no teacher (method {cfg.get('method')!r}; it holds "
                                  f"{', '.join(sorted(state_dicts))})")
        heads = {"teacher": (n1, n2)}
    elif "task1" in state_dicts or "task2" in state_dicts:
        heads = {"task1": (n1,), "task2": (n2,)}
    elif "student" in state_dicts:
        heads = {"student": (n1, n2)}
    else:
        raise CheckpointError(f"checkpoint {pt} holds no student (it holds {', '.join(sorted(state_dicts))}); "
                              "pass network='teacher'")
    opts = {"n_channels": len(inputs["channels"]), "window_length": inputs["length"],
            **(cfg.get("model_options") or {})}
    models = {}
    for name, nc in heads.items():
        if name not in state_dicts:
            raise CheckpointError(f"checkpoint {pt} lacks network {name!r} (it holds {', '.join(sorted(state_dicts))})")
        try:
            net = build_model(cfg["model"], nc, **opts)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {base}: model {cfg['model']!r} cannot be built from its .json "
                                  f"({str(e).splitlines()[0]})") from None
        _check_fits(pt, name, net, state_dicts[name], cfg["model"], inputs)
        net.load_state_dict(state_dicts[name])
        models[name] = net.eval()
    return Predictor(base, models, inputs, meta, network)


def _run_network(base: Path, network: str) -> Path | None:
    """The checkpoint base of ``network`` when ``<base>.json`` is a run record (``runs/<run_id>``)
    naming its networks, checked against the sha256 the record holds; None when it is not a run."""
    js = base.with_name(base.name + ".json")
    if base.with_name(base.name + ".pt").exists() or not js.is_file():
        return None
    try:
        rec = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # not a record: load() names the missing .pt
    if not (isinstance(rec, dict) and "run_id" in rec and "spec" in rec):
        return None
    rid, nets = rec["run_id"], rec.get("networks")
    if not isinstance(nets, dict) or not nets:
        raise CheckpointError(f"run {rid} ({js}) kept no networks: made before runs kept them or with `run "
                              "--no-networks`; delete its record and run the grid again to keep them")
    ref = nets.get(network)
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        method = (rec.get("spec") or {}).get("method")
        raise CheckpointError(f"run {rid} ({js}) has no {network} network (method {method!r} kept "
                              f"{', '.join(sorted(nets))})")
    pt = js.parent / ref["file"]
    if not pt.is_file():
        raise CheckpointError(f"{pt}: the {network} network of run {rid} is missing (networks are not committed: "
                              "they stay where the run ran); rerun the run to make it again")
    if sha256_file(pt) != ref.get("sha256"):
        raise CheckpointError(f"{pt}: its sha256 differs from the one the record of run {rid} ({js.name}) holds: it "
                              "is not that run's network; rerun the run to make it again")
    return _base(pt)


def _checked_inputs(base: Path, meta: dict) -> dict:
    """The ``inputs`` of a checkpoint's metadata, complete and consistent (a ``CheckpointError``
    naming the key otherwise). A null standardiser is accepted only from a checkpoint saved before
    :data:`FORMAT` (it meant: windows used as given); since then one is always recorded."""
    js = base.with_name(base.name + ".json")  # the messages name the file at fault
    inputs = meta.get("inputs")
    if not inputs:
        raise CheckpointError(f"checkpoint metadata {js} has no 'inputs' (trained on plain arrays, or "
                              "saved before checkpoints kept them): retrain it with fit_or_load on Windows")
    if not isinstance(inputs, dict):
        raise CheckpointError(f"checkpoint metadata {js}: 'inputs' is not a JSON object")
    missing = [k for k in INPUT_KEYS if k not in inputs]
    if missing:
        raise CheckpointError(f"checkpoint metadata {js}: 'inputs' lack {missing}: it cannot turn a recording into "
                              "the windows it was trained on; retrain it")
    for k in ("channels", "activity_names", "placement_names"):
        v = inputs[k]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise CheckpointError(f"checkpoint metadata {js}: inputs[{k!r}] must be a non-empty list of names, got {v!r}")
    for k in ("length", "step"):
        v = inputs[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CheckpointError(f"checkpoint metadata {js}: inputs[{k!r}] must be a whole number >= 1, got {v!r}")
    if inputs["layout"] not in LAYOUTS:
        raise CheckpointError(f"checkpoint metadata {js}: inputs['layout'] is {inputs['layout']!r}, not one of {LAYOUTS}")
    std = inputs["standardizer"]
    if std is None:
        if meta.get("format", 1) >= FORMAT:
            raise CheckpointError(f"checkpoint metadata {js}: its standardiser is null: new recordings could not be scaled "
                                  "as the training windows were; retrain it (or restore its .json)")
        return inputs
    c = len(inputs["channels"])
    problem = None
    if not isinstance(std, dict) or "mean" not in std or "std" not in std:
        problem = "lacks 'mean' or 'std'"
    else:
        try:
            mean, sd = np.asarray(std["mean"], dtype=np.float64), np.asarray(std["std"], dtype=np.float64)
        except (TypeError, ValueError):
            mean = sd = np.zeros(0)
        if mean.shape != (c,) or sd.shape != (c,):
            problem = f"has {mean.size} means and {sd.size} stds for {c} channels"
        elif not (np.isfinite(mean).all() and np.isfinite(sd).all() and (sd > 0).all()):
            problem = "holds a non-finite mean or a std that is not > 0"
        elif std.get("layout", inputs["layout"]) != inputs["layout"]:
            problem = f"is for layout {std.get('layout')!r}, the inputs are {inputs['layout']!r}"
    if problem:
        raise CheckpointError(f"checkpoint metadata {js}: its standardiser {problem}: new recordings could not be scaled "
                              "as the training windows were; retrain it (or restore its .json)")
    return inputs


def _check_fits(pt: Path, name: str, net: torch.nn.Module, state: Mapping, model: str, inputs: dict) -> None:
    """``state`` (network ``name`` of ``pt``) against ``net`` (built from the ``.json``): the same
    tensor names and shapes, or one line saying what differs; a head's size is named against the
    class names it should have (fewer names in the ``.json`` than the network's outputs)."""
    want = net.state_dict()
    missing, extra = [k for k in want if k not in state], [k for k in state if k not in want]
    if missing or extra:
        what = "; ".join(p for p in (f"lacks {missing[:3]}" if missing else "",
                                     f"has unexpected {extra[:3]}" if extra else "") if p)
        raise CheckpointError(f"checkpoint {pt}: network {name!r} is not the {model!r} its .json describes: it {what}")
    for k, t in want.items():
        got = tuple(state[k].shape)
        if got == tuple(t.shape):
            continue
        head = re.fullmatch(r"heads\.(\d+)\.(weight|bias)", k)
        if head:
            task = int(name[-1]) if name in ("task1", "task2") else int(head.group(1)) + 1
            names = "activity_names" if task == 1 else "placement_names"
            raise CheckpointError(f"checkpoint {pt}: network {name!r} has {got[0]} outputs for task {task}, its .json "
                                  f"names {len(inputs[names])} {names}: the .pt and .json do not belong together")
        raise CheckpointError(f"checkpoint {pt}: tensor {k!r} of network {name!r} is {list(got)}, a {model!r} built "
                              f"from its .json ({len(inputs['channels'])} channels, windows of {inputs['length']}) has "
                              f"{list(t.shape)}: the .pt and .json do not belong together")


# --------------------------------------------------------------------------------------------
# a run's networks, beside its record


def network_payloads(result, prep, fit_idx, val_idx) -> dict[str, tuple[dict, dict]]:
    """``{network: (state dicts, metadata)}`` of an ``engine.FitResult`` trained on ``prep`` (a
    ``pipeline.Prepared``): ``"student"`` (``{"student"}``, or ``{"task1", "task2"}`` for
    singletask) and ``"teacher"`` when the method has one (smooth_distill's EMA teacher,
    born_again's stage-1 net). The metadata makes each a self-contained checkpoint:
    :func:`load_predictor` rebuilds and scores it (config, inputs with the standardiser, class
    counts, data options, the subjects it saw)."""
    sds = result.state_dicts
    student = {k: sds[k] for k in ("task1", "task2")} if "task1" in sds else {"student": sds["student"]}
    nets = {"student": student, **({"teacher": {"teacher": sds["teacher"]}} if "teacher" in sds else {})}
    common = {"config": result.config.to_dict(), "inputs": input_spec(prep), "n_classes": list(result.n_classes),
              "data_options": dict(prep.options), "subjects_seen": subjects_seen(prep, fit_idx, val_idx),
              "device": result.device}
    best = result.best_epochs or {}
    return {who: (sd, {**common, "network": who, "best_epoch": best.get(who, result.best_epoch)})
            for who, sd in nets.items()}


def network_files(runs_dir: str | os.PathLike, run_id: str) -> list[Path]:
    """The network files (``.pt`` and ``.json``) of run ``run_id`` under ``runs_dir``."""
    folder = Path(runs_dir) / NETWORKS_DIR
    return sorted(p for who in NETWORKS for p in (folder / f"{run_id}.{who}.pt", folder / f"{run_id}.{who}.json")
                  if p.exists())


def save_networks(runs_dir: str | os.PathLike, run_id: str, payloads: Mapping[str, tuple], run: Mapping | None = None) -> dict:
    """Save each network of :func:`network_payloads` as a checkpoint
    ``runs_dir/networks/<run_id>.<network>`` (atomic, :func:`save`) and return the record's
    reference ``{network: {"file": "networks/<run_id>.<network>.pt", "sha256"}}``. ``run`` (e.g. the
    run id and label) is added to each checkpoint's metadata."""
    refs = {}
    for who, (sds, meta) in payloads.items():
        base = save(Path(runs_dir) / NETWORKS_DIR / f"{run_id}.{who}", sds, {**meta, "run": dict(run or {})})
        pt = base.with_name(base.name + ".pt")
        refs[who] = {"file": f"{NETWORKS_DIR}/{pt.name}", "sha256": sha256_file(pt)}
    return refs


def cli_score(args) -> int:
    """``python -m smoothdistill_lib score PATH --subjects 3,4 [--network teacher] [--dataset NAME]
    [--mode M]``: score a saved network (a run ``results/<exp>/runs/<run_id>`` or a checkpoint) on
    those subjects of a registered dataset (default: the one it was trained on) and print accuracy
    and macro-F1 of both tasks. A subject the network was trained or selected on is named in a
    warning: its scores are not those of an unseen subject."""
    pred = load_predictor(args.checkpoint, network=args.network)
    data_options = pred.metadata.get("data_options") or {}
    # the registry name it was prepared from (a registered loader may name its recording otherwise)
    trained_on = data_options.get("dataset") or pred.inputs.get("dataset")
    dataset = args.dataset or trained_on
    if not dataset:
        raise UserError(f"score: checkpoint {pred.path} does not name the dataset it was trained on; pass --dataset")
    # the loader options it was trained with (e.g. sleepsim's seed), for its own dataset only
    load_options = (data_options.get("load_options") or {}) if dataset == trained_on else {}
    mode = args.mode or data_options.get("mode")
    rec = datasets.load_recording(dataset, mode=mode, subjects=args.subjects, **load_options)
    check_recording(rec, dataset)
    seen = sorted(set(args.subjects) & set(pred.metadata.get("subjects_seen") or []))
    if seen:
        warnings.warn(f"score: subject(s) {seen} were among the {pred.network}'s training subjects: their scores "
                      "are not those of unseen subjects", stacklevel=2)
    table = pred.score(rec)
    run = pred.metadata.get("run") or {}
    what = f"run {run['run_id']} ({run.get('label', '')})" if run.get("run_id") else str(pred.path)
    print(f"{what}, {pred.network} network, on {dataset} subjects {', '.join(map(str, sorted(set(args.subjects))))}:")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    return 0
