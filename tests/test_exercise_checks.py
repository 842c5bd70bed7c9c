"""The self-checks discriminate: every exercise's plausible wrong answers are rejected, its official
solution and a differently written correct answer pass (smoothdistill_lib.exercises).

For each registered exercise, CASES gives the chapter names its solution reads (a small context built
here from the library, made-up data, or the shipped run records, read only), a correct answer written
differently from the official one, and at least three plausible wrong answers, each chosen with data
on which it gives a different value from the right one. The official solution is the chapter's
solution cell, run on that context. A wrong answer marked "hidden" passes the public
self-check (it is right on every input the student sees) and must be rejected by the grader's hidden
check.

The check cells themselves show no computation: each is one ``exercises.verify(...)`` call.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from smoothdistill_lib import (
    course,
    ema,
    exercises,
    grading,
    mhealth,
    records,
    report,
    splits,
    windows,
    wisdm,
)
from smoothdistill_lib.config import get_mode
from smoothdistill_lib.engine import TrainConfig, make_optimizer
from smoothdistill_lib.methods import METHODS
from smoothdistill_lib.models import build_model

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


# ------------------------------------------------------------------------------------------------
# the contexts: the chapter names each official solution reads
# ------------------------------------------------------------------------------------------------


def _init_share(decay, steps, warmup):  # chapter 5's init_share (measured with EMATeacher)
    return np.array(exercises._teacher_trace(decay, steps, warmup))


@cache
def _horizons():
    """Chapter 5's horizons table, rows WISDM and MHEALTH, computed as the chapter computes it."""
    batch = TrainConfig(epochs=1).batch_size
    sizes = {"WISDM": sum(wisdm.DOCUMENTED_ROWS.values()), "MHEALTH": 3 * mhealth.DOCUMENTED_ROWS}
    rows = {}
    for name, n_rows in sizes.items():
        n = len(windows.window_starts(n_rows, length=100, step=60))
        fit = len(splits.paper_split(n, seed=42).folds[0][0])
        rows[name] = {"fit windows (fold 1)": fit,
                      f"steps/epoch (batch {batch})": ema.run_scale(fit, batch, 1, 0.999)["steps/epoch"]}
    return pd.DataFrame(rows).T, batch


@cache
def _records(name):
    r = records.load_experiment(name)
    if r is None:
        pytest.skip(f"no records in results/{name}")
    return r


def _ratio_name():
    found = records.experiments()
    found = found[found.index.str.startswith("ratio") & (found > 0)]
    return found.idxmax() if len(found) else "ratio"


# a run whose two selection rules agree (as the chapter's multitask run did): the made-up histories of
# the check, not this one, tell the wrong rules apart
_RUN_6_1 = exercises._history([50, 60, 70, 65], [40, 50, 60, 55])


def _dep():
    """A made-up deployment table (chapter 11's DEP, means over seeds): on sleepsim the student with
    the best validation accuracy within 100 kB is exactly 100 kB, a teacher and a bigger student
    validate better, the smallest file is not the best, and another student is the most accurate on
    the *test* windows; on wisdm the fp32 of a student fits and its int8 validates worse."""
    rows = [("sleepsim", "mtlnet (teacher)", "fp32", 9000.0, 95.0, 96.0),
            ("sleepsim", "mtlnet (teacher)", "int8", 60.0, 94.0, 95.0),
            ("sleepsim", "mobilenet_v3s (all)", "fp32", 300.0, 92.0, 92.0),
            ("sleepsim", "mobilenet_v3s (all)", "int8", 100.0, 85.0, 90.0),
            ("sleepsim", "small_cnn (none)", "int8", 20.0, 84.0, 88.0),
            ("sleepsim", "small_cnn (none)", "fp32", 70.0, 88.0, 89.0),
            ("wisdm", "mobilenet_v3s (all)", "fp32", 300.0, 40.0, 41.0),
            ("wisdm", "small_cnn (none)", "fp32", 70.0, 33.0, 35.0),
            ("wisdm", "small_cnn (none)", "int8", 20.0, 31.0, 34.5)]
    return pd.DataFrame(rows, columns=["dataset", "model", "precision", "kB", "acc task 1", "val acc task 1"])


def _context(number):
    """The names the official solution of ``number`` reads (a fresh dict each time)."""
    if number == "3.2":
        return {"recordings": _cached_recordings(), "make_windows": windows.make_windows, "leakage": splits.leakage,
                "paper_split": splits.paper_split,
                "KINDS": ["shared_samples", "subject_in_train", "same_moment_other_placement", "any"]}
    if number == "4.1":
        return {"N_CLASSES": (12, 3)}
    if number == "5.1":
        horizons, batch = _horizons()
        return {"horizons": horizons, "BATCH": batch}
    if number in ("5.2", "5.3"):
        return {"mode_steps": 40, "run_steps": 320, "A_MODE": 0.97, "A_PAPER": get_mode("full").ema_decay,
                "init_share": _init_share, "np": np}
    if number == "6.1":
        meta = {"history": _RUN_6_1.to_dict("records"), "best_epoch": 3}
        return {"results": {"multitask": SimpleNamespace(metadata=meta)}, "hist": _RUN_6_1.copy()}
    if number == "6.3":
        gen = torch.Generator().manual_seed(0)
        batch = (torch.randn(64, 1, 3, 100, generator=gen), torch.randint(0, 12, (64,), generator=gen),
                 torch.randint(0, 3, (64,), generator=gen))
        torch.manual_seed(1)
        frozen = build_model("mtlnet", (12, 3)).eval().requires_grad_(False)
        return {"BATCH": batch, "CFG": TrainConfig(epochs=1), "N_CLASSES": (12, 3), "frozen": frozen, "torch": torch,
                "build_model": build_model, "make_optimizer": make_optimizer, "METHODS": METHODS}
    if number == "7.1":
        return {"CFG": TrainConfig(epochs=1, ema_decay=0.999), "N_CLASSES": (12, 3), "EMATeacher": ema.EMATeacher, "torch": torch,
                "build_model": build_model, "cpu_ms": {"smooth_distill": 5.0, "multitask": 3.5, "singletask": 4.0}}
    if number == "7.2":
        return {"run_decay": 0.97, "steps_per_epoch": 40, "get_mode": get_mode}
    if number == "8.1":
        return {"MAIN": _records("main").df, "report": report}
    if number == "9.1":
        return {"LAM": _records("lambda").df, "report": report}
    if number == "9.2":
        return {"EXPERIMENTS": {"lambda": _records("lambda")}, "LAM": _records("lambda").df}
    if number == "9.3":
        rat = _records(_ratio_name()).df
        return {"RAT": rat, "report": report, "acc1": report.pick(report.ratio_table(rat), task=1, metric="accuracy")}
    if number == "10.3":
        return {"PAPER_ENERGY_KWH": exercises.compute.PAPER_ENERGY_KWH}
    if number == "11.4":
        return {"DEP": _dep()}
    if number == "12.2":
        return {"np": np, "models": exercises.models}
    return {}


@cache
def _recording():
    return exercises.sleepsim.simulate(n_subjects=2, seconds=12.0, seed=0)


def _cached_recordings():
    return {"sleepsim": _recording()}


# ------------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    alternative: str  # a correct answer, written differently from the official solution
    wrong: dict[str, str]  # label -> code defining the answer names; a label ending "(hidden)" passes the public check
    hides: list[str] = field(default_factory=list)  # the right value's text, which no message may show


GAP = "{{p: float(np.linalg.norm(G[p] - np.roll(G[p], {k}, axis=0), axis=1).mean(){op}) for p in PLACEMENT_NAMES}}"
SETUP_2_1 = ("import numpy as np\nfrom smoothdistill_lib import sleepsim\nfrom smoothdistill_lib.sleep import "
             "PLACEMENT_NAMES, POSTURE_ANGLES_DEG\nG = {p: sleepsim.gravity_vector(np.array(POSTURE_ANGLES_DEG), p) "
             "for p in PLACEMENT_NAMES}\n")
RIGHT_4_1 = "flat_dim_128, n_params_128 = 1664, 2256271\n"
SD_6_3 = ("from dataclasses import replace\n"
          "def step(method, cfg, teacher=None, seed=0):\n"
          "    torch.manual_seed(seed)\n"
          "    s = build_model('mtlnet', N_CLASSES)\n"
          "    opt = make_optimizer(s.parameters(), cfg.lr, torch.device('cpu'))\n"
          "    return METHODS[method].step({'student': s}, opt, teacher, BATCH, cfg)\n")
TIME_7_1 = ("import time\nimport torch\nteacher = EMATeacher(build_model('mtlnet', N_CLASSES), CFG.ema_decay)\n"
            "n = torch.get_num_threads()\ntorch.set_num_threads(1)\nteacher.update()\n"
            "t0 = time.process_time()\nfor _ in range(100):\n    teacher.update()\n"
            "total_s = time.process_time() - t0\ntorch.set_num_threads(n)\nper_ms = 1000 * total_s / 100\n"
            "extra = cpu_ms['smooth_distill'] - cpu_ms['multitask']\n")
T5 = ("sd = MAIN[MAIN['method'] == 'smooth_distill']\n"
      "T, S = report.table5(sd, who='teacher'), report.table5(sd)\n")
LAM_9_1 = ("t = report.pick(report.lambda_table(LAM, who='teacher'), task=1, split='test', metric='accuracy')\n"
           "s = report.pick(report.lambda_table(LAM), task=1, split='test', metric='accuracy')\n"
           "tv = report.pick(report.lambda_table(LAM, who='teacher'), task=1, split='val', metric='accuracy')\n"
           "best = {ds: float(t.loc[ds].idxmax()) for ds in t.index.unique('dataset')}\n"
           "wins = {(ds, float(lam)) for (ds, lam), d in (t - s).items() if d > 0}\n")
CURVE_9_3 = "curve = acc1.unstack('train_ratio')\n"


def _cells(table, value):
    return (f"{{(ds, p, int(task), metric) for (ds, p, _), row in {table}.iterrows() "
            f"for (task, metric), d in row.items() if {value}}}")


CASES: dict[str, Case] = {
    "1.1": Case(
        alternative="steps_to_half = next(t for t in range(1, 1000) if 0.99 ** t <= 0.5)",
        wrong={"floor instead of ceil": "import math\nsteps_to_half = int(math.log(0.5) / math.log(0.99))",
               "one step too many": "steps_to_half = 70",
               "the horizon 1/(1 - a), not the half-life": "steps_to_half = round(1 / (1 - 0.99))",
               "the paper's decay instead of 0.99": "import math\nsteps_to_half = math.ceil(math.log(0.5) / math.log(0.999))",
               "an unrounded float": "import math\nsteps_to_half = math.log(0.5) / math.log(0.99)"},
        hides=["69"]),
    "2.1": Case(
        alternative=("import math\nfrom smoothdistill_lib import sleepsim\n"
                     "neighbour_gap = {p: math.dist(sleepsim.gravity_vector(60, p), sleepsim.gravity_vector(30, p)) "
                     "for p in ('abdomen', 'chest', 'neck')}\n"
                     "closest_placement = sorted(neighbour_gap, key=lambda p: neighbour_gap[p])[0]"),
        wrong={"squared distances": SETUP_2_1 + "neighbour_gap = " + GAP.format(k=-1, op=" ** 2")
               + "\nclosest_placement = 'neck'",
               "next-but-one postures": SETUP_2_1 + "neighbour_gap = " + GAP.format(k=-2, op="")
               + "\nclosest_placement = 'neck'",
               "the posture angle alone, not how the segment lies": "import math\nneighbour_gap = {p: 2 * math.sin("
               "math.radians(15)) for p in ('neck', 'chest', 'abdomen')}\nclosest_placement = 'neck'",
               "L1 distance": SETUP_2_1 + "neighbour_gap = {p: float(np.abs(G[p] - np.roll(G[p], -1, axis=0)).sum("
               "axis=1).mean()) for p in PLACEMENT_NAMES}\nclosest_placement = 'neck'",
               "the right distances, the wrong placement": SETUP_2_1 + "neighbour_gap = " + GAP.format(k=-1, op="")
               + "\nclosest_placement = 'chest'",
               "the old answer: two posture names": "neighbour_gap = ('right_down', 'down_right')\n"
               "closest_placement = 'chest'"}),
    "3.1": Case(
        alternative="p_test = 0.2\nexpected_share = 1 - p_test * p_test",
        wrong={"the test share": "expected_share = 0.2", "a neighbour in training": "expected_share = 0.8",
               "both neighbours in training": "expected_share = 0.8 ** 2",
               "a percentage": "expected_share = 96",
               "four overlapping neighbours": "expected_share = 1 - 0.2 ** 4"}),
    "3.2": Case(
        alternative="drops_to_zero = ['shared_samples']",
        wrong={"none": "drops_to_zero = set()",
               "the same moment too": "drops_to_zero = {'shared_samples', 'same_moment_other_placement'}",
               "the subject leak": "drops_to_zero = {'subject_in_train'}",
               "all three": "drops_to_zero = set(KINDS[:3])",
               "one string": "drops_to_zero = 'shared_samples'"}),
    "4.1": Case(
        alternative=("L = 128\nfor _ in range(2):\n    L = (L - 8) // 2\nflat_dim_128 = 64 * L\n"
                     "from smoothdistill_lib.models import build_model\n"
                     "n_params_128 = sum(p.numel() for p in build_model('mtlnet', N_CLASSES, window_length=128).parameters())"),
        wrong={"the default window (100)": "from smoothdistill_lib.models import build_model\n"
               "flat_dim_128 = build_model('mtlnet', N_CLASSES).flat_dim\nn_params_128 = 2256271",
               "a convolution removes 9 samples": "flat_dim_128 = 64 * (((128 - 9) // 2 - 9) // 2)\nn_params_128 = 2256271",
               "one channel": "flat_dim_128 = ((128 - 8) // 2 - 8) // 2\nn_params_128 = 2256271",
               "the parameters of the default network": "from smoothdistill_lib import models\nflat_dim_128 = 1664\n"
               "n_params_128 = models.count_parameters(models.build_model('mtlnet', N_CLASSES))",
               "weights without biases": "from smoothdistill_lib.models import build_model\nflat_dim_128 = 1664\n"
               "n_params_128 = sum(p.numel() for n, p in build_model('mtlnet', N_CLASSES, window_length=128)"
               ".named_parameters() if not n.endswith('bias'))"},
        hides=["1664", "2256271"]),
    "5.1": Case(
        alternative="s = int(horizons.loc['WISDM'].iloc[1])\na_one_epoch = (s - 1) / s",
        wrong={"windows, not steps": "a_one_epoch = 1 - 1 / horizons.loc['WISDM', 'fit windows (fold 1)']",
               "1/steps": "a_one_epoch = 1 / horizons.loc['WISDM', f'steps/epoch (batch {BATCH})']",
               "one step more": "a_one_epoch = 1 - 1 / (horizons.loc['WISDM', f'steps/epoch (batch {BATCH})'] + 1)",
               "half-life instead of horizon": "a_one_epoch = 0.5 ** (1 / horizons.loc['WISDM', f'steps/epoch (batch {BATCH})'])",
               "MHEALTH's row": "a_one_epoch = 1 - 1 / horizons.loc['MHEALTH', f'steps/epoch (batch {BATCH})']",
               "the paper's decay": "a_one_epoch = 0.999"}),
    "5.2": Case(
        alternative="import math\na_max_1pct = math.exp(math.log(0.01) / mode_steps)",
        wrong={"the whole run": "a_max_1pct = 0.01 ** (1 / run_steps)",
               "99 % instead of 1 %": "a_max_1pct = 0.99 ** (1 / mode_steps)",
               "the mode's decay": "a_max_1pct = A_MODE",
               "one step fewer": "a_max_1pct = 0.01 ** (1 / (mode_steps - 1))",
               "10 % instead of 1 %": "a_max_1pct = 0.1 ** (1 / mode_steps)"}),
    "5.3": Case(
        alternative="import math\nupdates_below_1pct = math.ceil(math.log(0.01) / math.log(A_PAPER))",
        wrong={"argmax without + 1": "s = init_share(A_PAPER, 6000, warmup=False)\n"
               "updates_below_1pct = int(np.argmax(s < 0.01))",
               "an unrounded float": "import math\nupdates_below_1pct = math.log(0.01) / math.log(A_PAPER)",
               "ln a taken as -(1 - a)": "import math\nupdates_below_1pct = math.ceil(math.log(100) / (1 - A_PAPER))",
               "the mode's decay": "import math\nupdates_below_1pct = math.ceil(math.log(0.01) / math.log(A_MODE))",
               "one update too many": "updates_below_1pct = 4604"},
        hides=["4603"]),
    "6.1": Case(
        alternative=("def best_epoch_task1(history):\n    best, epoch = -1.0, None\n"
                     "    for e, acc in zip(history['epoch'], history['val_acc_task1']):\n"
                     "        if acc > best:\n            best, epoch = acc, int(e)\n    return epoch"),
        wrong={"the engine's rule (mean of both tasks)": "def best_epoch_task1(history):\n"
               "    m = (history['val_acc_task1'] + history['val_acc_task2']) / 2\n"
               "    return int(history.loc[m.idxmax(), 'epoch'])",
               "a row position": "def best_epoch_task1(history):\n"
               "    return int(history['val_acc_task1'].to_numpy().argmax())",
               "the last of tied epochs": "def best_epoch_task1(history):\n"
               "    h = history[history['val_acc_task1'] == history['val_acc_task1'].max()]\n"
               "    return int(h['epoch'].max())",
               "task 2's column": "def best_epoch_task1(history):\n"
               "    return int(history.loc[history['val_acc_task2'].idxmax(), 'epoch'])",
               "the lowest validation loss": "def best_epoch_task1(history):\n"
               "    return int(history.loc[history['val_loss'].idxmin(), 'epoch'])",
               "index label + 1 (hidden)": "def best_epoch_task1(history):\n"
               "    return int(history['val_acc_task1'].idxmax()) + 1"}),
    "6.3": Case(
        alternative=SD_6_3 + "out = step('born_again', replace(CFG, ba_lam=0, alpha=0.7), frozen)\n"
                             "ba_loss_lam0 = out['loss']  # a one-element tensor",
        wrong={"lam left at its default": SD_6_3 + "ba_loss_lam0 = float(step('born_again', replace(CFG, alpha=0.7), "
               "frozen)['loss'])",
               "alpha left at 0.5": SD_6_3 + "ba_loss_lam0 = float(step('born_again', replace(CFG, ba_lam=0.0), frozen)"
               "['loss'])",
               "task weights swapped": SD_6_3 + "ba_loss_lam0 = float(step('born_again', replace(CFG, ba_lam=0.0, "
               "alpha=0.3), frozen)['loss'])",
               "a network not seeded with 0": SD_6_3 + "ba_loss_lam0 = float(step('born_again', replace(CFG, ba_lam="
               "0.0, alpha=0.7), frozen, seed=1)['loss'])",
               "task 1 only": SD_6_3 + "import torch.nn.functional as F\ntorch.manual_seed(0)\n"
               "z1, z2 = build_model('mtlnet', N_CLASSES)(BATCH[0])\n"
               "ba_loss_lam0 = float(0.7 * F.cross_entropy(z1, BATCH[1]))"}),
    "7.1": Case(
        alternative=TIME_7_1 + "ema_update_ms = total_s * 1000 / 100\n"
                               "ema_share_of_extra = ema_update_ms / (cpu_ms['smooth_distill'] - cpu_ms['multitask'])",
        wrong={"the total over 100 updates": TIME_7_1 + "ema_update_ms = 1000 * total_s\n"
               "ema_share_of_extra = ema_update_ms / extra",
               "seconds": TIME_7_1 + "ema_update_ms = per_ms / 1000\nema_share_of_extra = ema_update_ms / extra",
               "microseconds": TIME_7_1 + "ema_update_ms = per_ms * 1000\nema_share_of_extra = ema_update_ms / extra",
               "share of the whole Smooth-Distill step": TIME_7_1 + "ema_update_ms = per_ms\n"
               "ema_share_of_extra = per_ms / cpu_ms['smooth_distill']",
               "a percentage": TIME_7_1 + "ema_update_ms = per_ms\nema_share_of_extra = 100 * per_ms / extra",
               "share of the multitask step": TIME_7_1 + "ema_update_ms = per_ms\n"
               "ema_share_of_extra = per_ms / cpu_ms['multitask']"}),
    "7.2": Case(
        alternative=("def init_left(a, steps, warmup):\n    w = 1.0\n    for t in range(steps):\n"
                     "        w *= min(a, (1 + t) / (10 + t)) if warmup else a\n    return w"),
        wrong={"the warm-up without its cap a": "import numpy as np\ndef init_left(a, steps, warmup):\n"
               "    t = np.arange(steps)\n    return float(np.prod((1 + t) / (10 + t))) if warmup else a ** steps",
               "t counted from 1": "import numpy as np\ndef init_left(a, steps, warmup):\n"
               "    t = np.arange(1, steps + 1)\n"
               "    return float(np.prod(np.minimum(a, (1 + t) / (10 + t)))) if warmup else a ** steps",
               "one update fewer": "import numpy as np\ndef init_left(a, steps, warmup):\n"
               "    t = np.arange(steps - 1)\n"
               "    return float(np.prod(np.minimum(a, (1 + t) / (10 + t)))) if warmup else a ** (steps - 1)",
               "the student's share, not the initial net's": "import numpy as np\ndef init_left(a, steps, warmup):\n"
               "    t = np.arange(steps)\n"
               "    return 1 - (float(np.prod(np.minimum(a, (1 + t) / (10 + t)))) if warmup else a ** steps)",
               "the warm-up ignored": "def init_left(a, steps, warmup):\n    return a ** steps",
               "the cap fixed at 0.9 (hidden)": "import numpy as np\ndef init_left(a, steps, warmup):\n"
               "    t = np.arange(steps)\n"
               "    return float(np.prod(np.minimum(0.9, (1 + t) / (10 + t)))) if warmup else a ** steps"}),
    "8.1": Case(
        alternative=T5 + "teacher_wins = set()\nfor key in T.index:\n    for task in (1, 2):\n"
                         "        for metric in ('accuracy', 'macro_f1'):\n"
                         "            if T.loc[key, (task, 'test', metric, 'mean')] > S.loc[key, (task, 'test', metric, 'mean')]:\n"
                         "                teacher_wins.add((key[0], key[1], task, metric))",
        wrong={"the validation split": T5 + "d = (T.xs('mean', axis=1, level='stat') - S.xs('mean', axis=1, level='stat'))"
               ".xs('val', axis=1, level='split')\nteacher_wins = " + _cells("d", "d > 0"),
               "where the student wins": T5 + "d = (T.xs('mean', axis=1, level='stat') - S.xs('mean', axis=1, "
               "level='stat')).xs('test', axis=1, level='split')\nteacher_wins = " + _cells("d", "d < 0"),
               "accuracy only": T5 + "d = (T.xs('mean', axis=1, level='stat') - S.xs('mean', axis=1, level='stat'))"
               ".xs('test', axis=1, level='split')\nteacher_wins = " + _cells("d", "d > 0 and metric == 'accuracy'"),
               "the standard deviations": T5 + "d = (T.xs('sd', axis=1, level='stat') - S.xs('sd', axis=1, "
               "level='stat')).xs('test', axis=1, level='split')\nteacher_wins = " + _cells("d", "d > 0")}),
    "8.3": Case(
        alternative="def smallest_p(n):\n    return 2 * 0.5 ** n",
        wrong={"one-sided": "def smallest_p(n):\n    return 1 / 2 ** n",
               "the normal approximation": "from scipy import stats\ndef smallest_p(n):\n"
               "    return stats.wilcoxon(range(1, n + 1), method='approx').pvalue",
               "one over the rank sums": "def smallest_p(n):\n    return 2 / (n * (n + 1) / 2 + 1)",
               "twice too large": "def smallest_p(n):\n    return 4 / 2 ** n",
               "a table of the checked n (hidden)": "def smallest_p(n):\n    return {3: 0.25, 5: 0.0625, 8: 2 / 256}[n]"}),
    "9.1": Case(
        alternative=LAM_9_1 + "best_teacher_lam = {ds: lam for ds, lam in best.items()}\n"
                              "teacher_wins = sorted(wins)\nteacher_wins = set(teacher_wins)",
        wrong={"the student's table": LAM_9_1 + "best_teacher_lam = {ds: float(s.loc[ds].idxmax()) for ds in best}\n"
               "teacher_wins = wins",
               "the validation split": LAM_9_1 + "best_teacher_lam = {ds: float(tv.loc[ds].idxmax()) for ds in best}\n"
               "teacher_wins = wins",
               "where the student wins": LAM_9_1 + "best_teacher_lam = best\n"
               "teacher_wins = {(ds, float(lam)) for (ds, lam), d in (t - s).items() if d < 0}",
               "every lambda": LAM_9_1 + "best_teacher_lam = best\nteacher_wins = {(ds, float(lam)) for ds, lam in t.index}"}),
    "9.2": Case(
        alternative=("def init_weight_left(n_fit, batch_size, epochs, a):\n"
                     "    steps_per_epoch = -(-n_fit // batch_size)  # ceil with integers\n"
                     "    return a ** (steps_per_epoch * epochs)"),
        wrong={"floor instead of ceil": "def init_weight_left(n_fit, batch_size, epochs, a):\n"
               "    return a ** (n_fit // batch_size * epochs)",
               "fractional steps": "def init_weight_left(n_fit, batch_size, epochs, a):\n"
               "    return a ** (n_fit / batch_size * epochs)",
               "one update per epoch": "def init_weight_left(n_fit, batch_size, epochs, a):\n    return a ** epochs",
               "the student's share": "import math\ndef init_weight_left(n_fit, batch_size, epochs, a):\n"
               "    return 1 - a ** (math.ceil(n_fit / batch_size) * epochs)",
               "the paper's a hard-coded (hidden)": "import math\ndef init_weight_left(n_fit, batch_size, epochs, a):\n"
               "    return 0.999 ** (math.ceil(n_fit / batch_size) * epochs)"}),
    "9.3": Case(
        alternative=CURVE_9_3 + "smallest_ratio_95 = {}\nfor key, row in curve.iterrows():\n"
                                "    smallest_ratio_95[key] = min(r for r, v in row.items() if v >= 0.95 * row.iloc[-1])",
        wrong={"the ratio of the best accuracy": CURVE_9_3 + "smallest_ratio_95 = curve.idxmax(axis=1).to_dict()",
               "the largest ratio": CURVE_9_3 + "smallest_ratio_95 = {k: curve.columns[-1] for k in curve.index}",
               "90 % instead of 95 %": CURVE_9_3 + "smallest_ratio_95 = curve.ge(0.90 * curve.iloc[:, -1], axis=0)"
               ".idxmax(axis=1).to_dict()",
               "95 % of the smallest ratio's accuracy": CURVE_9_3 + "smallest_ratio_95 = curve.ge(0.95 * "
               "curve.iloc[:, 0], axis=0).idxmax(axis=1).to_dict()"}),
    "10.3": Case(
        alternative="single_network_seconds = PAPER_ENERGY_KWH['singletask'] * 1000 * 3600 / 400 / 2",
        wrong={"both networks": "single_network_seconds = PAPER_ENERGY_KWH['singletask'] * 3.6e6 / 400",
               "hours": "single_network_seconds = PAPER_ENERGY_KWH['singletask'] / 2 * 1000 / 400",
               "watt-hours taken for joules": "single_network_seconds = PAPER_ENERGY_KWH['singletask'] / 2 * 3600 / 400",
               "a 1 kW GPU": "single_network_seconds = PAPER_ENERGY_KWH['singletask'] / 2 * 3.6e6 / 1000",
               "minutes": "single_network_seconds = PAPER_ENERGY_KWH['singletask'] / 2 * 3.6e6 / 400 / 60"}),
    "11.4": Case(
        alternative=("pick = {}\nfor ds in sorted(set(DEP['dataset'])):\n"
                     "    rows = DEP[(DEP['dataset'] == ds) & (DEP['kB'] <= 100)]\n"
                     "    rows = rows[[('teacher' not in m) for m in rows['model']]]\n"
                     "    best = rows.sort_values('val acc task 1').iloc[-1]\n"
                     "    pick[ds] = (best['model'], best['precision'])"),
        wrong={"chosen on the test windows": "fits = DEP[(DEP['kB'] <= 100) & ~DEP['model'].str.contains('teacher')]\n"
               "pick = {ds: tuple(g.loc[g['acc task 1'].idxmax(), ['model', 'precision']]) for ds, g in fits.groupby('dataset')}",
               "the budget ignored": "pick = {ds: tuple(g.loc[g['val acc task 1'].idxmax(), ['model', 'precision']]) "
               "for ds, g in DEP[~DEP['model'].str.contains('teacher')].groupby('dataset')}",
               "teachers included": "fits = DEP[DEP['kB'] <= 100]\npick = {ds: tuple(g.loc[g['val acc task 1'].idxmax(), "
               "['model', 'precision']]) for ds, g in fits.groupby('dataset')}",
               "the smallest file": "fits = DEP[(DEP['kB'] <= 100) & ~DEP['model'].str.contains('teacher')]\n"
               "pick = {ds: tuple(g.loc[g['kB'].idxmin(), ['model', 'precision']]) for ds, g in fits.groupby('dataset')}",
               "strictly under 100 kB": "fits = DEP[(DEP['kB'] < 100) & ~DEP['model'].str.contains('teacher')]\n"
               "pick = {ds: tuple(g.loc[g['val acc task 1'].idxmax(), ['model', 'precision']]) for ds, g in fits.groupby('dataset')}",
               "(precision, model)": "fits = DEP[(DEP['kB'] <= 100) & ~DEP['model'].str.contains('teacher')]\n"
               "pick = {ds: tuple(g.loc[g['val acc task 1'].idxmax(), ['precision', 'model']]) for ds, g in fits.groupby('dataset')}"}),
    "12.2": Case(
        alternative="first_samples = 3 * 60 // 9",
        wrong={"the whole window": "first_samples = 60", "every interleaved value": "first_samples = 180",
               "a third of the default window": "first_samples = 100 // 3", "half of it": "first_samples = 30",
               "an unrounded float": "first_samples = 60 / 3.2"},
        hides=["20"]),
}


# ------------------------------------------------------------------------------------------------
# the official solutions: the chapters' solution cells, or the proposed cells of chapters 8 and 9
# ------------------------------------------------------------------------------------------------



def _chapter_cells():
    out = {}
    for path in course.chapters(BOOK):
        for ex_id, group in course.exercise_groups(nbformat.read(path, 4), path.name).items():
            out[grading.exercise_number(ex_id)] = group
    return out


CELLS = _chapter_cells()


def _official(number):
    return CELLS[number]["solution"].source


def _answers(number, code):
    """Run ``code`` on the exercise's context; the names the check reads."""
    ns = _context(number)
    exec(code, ns)  # noqa: S102  (the chapters' solutions and this file's answers)
    names = exercises.EXERCISES[number].names
    return {n: ns[n] for n in names}


# ------------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------------


def test_every_exercise_of_the_book_is_registered_with_cases():
    assert sorted(CELLS, key=lambda n: tuple(map(int, n.split(".")))) == list(exercises.EXERCISES)
    assert set(CASES) == set(exercises.EXERCISES)
    for number, case in CASES.items():
        assert len(case.wrong) >= 3, number
        assert exercises.EXERCISES[number].points >= 2  # a public and a hidden check


@pytest.mark.parametrize("number", list(CASES))
def test_the_official_solution_passes_both_checks(number, capsys):
    answers = _answers(number, _official(number))
    exercises.verify(number, **answers)
    assert capsys.readouterr().out.endswith(f"Exercise {number}: correct.\n")
    exercises.grade(number, answers, hidden=True)


@pytest.mark.parametrize("number", list(CASES))
def test_a_differently_written_correct_answer_passes(number, capsys):
    assert CASES[number].alternative.strip() != _official(number).strip()
    answers = _answers(number, CASES[number].alternative)
    exercises.verify(number, **answers)
    assert capsys.readouterr().out == f"Exercise {number}: correct.\n"
    exercises.grade(number, answers, hidden=True)


WRONG = [(n, label) for n, case in CASES.items() for label in case.wrong]


@pytest.mark.parametrize(("number", "label"), WRONG, ids=[f"{n}-{label}" for n, label in WRONG])
def test_a_plausible_wrong_answer_is_rejected(number, label):
    answers = _answers(number, CASES[number].wrong[label])
    if label.endswith("(hidden)"):  # right on every input the student sees: only the grader's check rejects it
        exercises.grade(number, answers)
        with pytest.raises(exercises.WrongAnswer) as info:
            exercises.grade(number, answers, hidden=True)
    else:
        with pytest.raises(exercises.WrongAnswer) as info:
            exercises.verify(number, **answers)
    message = exercises.one_line(info.value)
    assert message.startswith(f"Exercise {number}: wrong: ") and "\n" not in message
    for hidden_text in CASES[number].hides:  # the message never gives the right value away
        assert not re.search(rf"(?<![\d.]){hidden_text}(?![\d.])", message), message


def test_the_data_of_the_checks_tells_the_wrong_answers_apart():
    """The inputs chosen for the weak checks of the issue: each plausible slip gives another value."""
    h = exercises._HISTORIES_6_1["a made-up run where the rules disagree"]
    task1, mean = exercises._selected_epoch(h, "task1"), exercises._selected_epoch(h, "mean")
    assert (task1, mean) == (2, 3)  # the engine's rule and the authors' differ; task 1 ties at 2 and 4
    assert h["val_acc_task1"].to_numpy().argmax() != task1  # a row position is not the epoch
    n_fit, batch, *_ = exercises.UNEVEN_RUN_9_2
    assert math.ceil(n_fit / batch) != n_fit // batch  # floor and ceil differ on the uneven run
    assert all(r["data"]["n_fit"] % r["spec"]["train"]["batch_size"] == 0
               for r in _records("lambda").records.values())  # ... and agree on the records: why it is there
    capped = exercises._teacher_trace(0.9, 200, warmup=True)[-1]
    uncapped = float(np.prod([(1 + t) / (10 + t) for t in range(200)]))
    assert not math.isclose(capped, uncapped, rel_tol=0.5)  # the cap binds at a = 0.9 within 200 updates
    assert exercises.ALPHA_6_3 != 0.5  # swapped task weights change the loss; the question asks for it
    question = next(c.source for c in nbformat.read(BOOK / "06_baselines.ipynb", 4).cells
                    if c.cell_type == "markdown" and "Born-Again step" in c.source)
    assert f"`alpha` set to {exercises.ALPHA_6_3}" in question


def test_the_per_update_time_check_rejects_a_total_and_accepts_one_update(monkeypatch):
    """Exercise 7.1 compares with its own measurement: a total over 100 updates (the bound of the old
    check let it through) is 100 times too large, seconds 1000 times too small."""
    monkeypatch.setattr(exercises, "_ema_update_ms", lambda *a, **k: 0.2)
    ctx = _context("7.1")
    extra = ctx["cpu_ms"]["smooth_distill"] - ctx["cpu_ms"]["multitask"]
    args = {"cpu_ms": ctx["cpu_ms"], "N_CLASSES": ctx["N_CLASSES"], "CFG": ctx["CFG"]}
    exercises.verify("7.1", ema_update_ms=0.25, ema_share_of_extra=0.25 / extra, **args)
    for ms, why in ((25.0, "far more than ONE update"), (0.00025, "far less")):
        with pytest.raises(exercises.WrongAnswer, match=why):
            exercises.verify("7.1", ema_update_ms=ms, ema_share_of_extra=ms / extra, **args)


CHECK_CELL = re.compile(r'from smoothdistill_lib import exercises  # self-checks with friendly messages\n\n'
                        r'exercises\.verify\("(?P<n>\d+\.\d+)", (?P<args>[^\n]*)\)$')

@pytest.mark.parametrize("path", course.chapters(BOOK), ids=lambda p: p.stem)
def test_check_cells_only_call_the_library(path):
    """No check cell shows how its expected value is computed: each is one exercises.verify call passing
    the answers and chapter names its check reads, with the exercise's own number."""
    for ex_id, group in course.exercise_groups(nbformat.read(path, 4), path.name).items():
        m = CHECK_CELL.match(group["check"].source)
        assert m, (path.name, ex_id, group["check"].source)
        number = grading.exercise_number(ex_id)
        assert m["n"] == number
        assert re.findall(r"(\w+)=\1", m["args"]) == list(exercises.EXERCISES[number].names)


def test_the_checks_hide_nothing_that_the_library_holds(capsys):
    """A registered check runs the same whether verify or grade calls it, and grade names a missing name."""
    with pytest.raises(exercises.NotAnswered, match="`steps_to_half` is not defined"):
        exercises.grade("1.1", {})
    with pytest.raises(TypeError, match="reads"):
        exercises.verify("1.1", steps=69)
    exercises.grade("1.1", {"steps_to_half": 69})
    assert capsys.readouterr().out == ""  # grading prints nothing; otter reports

