"""Compact seaborn figures for the chapters (paper Figs. 3-8). Every function returns a Figure.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: nothing is shown or kept in
pyplot's global registry (a notebook displays the returned figure once; ``glue`` can store it).
Error bars and bands are **t-based 95 % confidence intervals of the mean** over runs
(:func:`stats.summary`), the same intervals as the tables, not seaborn's default bootstrap.

- :func:`plot_history` -- training curves (Fig. 8) from engine ``history`` tables.
- :func:`plot_confusion` -- row-normalised confusion matrices (Fig. 3).
- :func:`plot_lambda_sweep` -- metric vs distillation weight lambda (Fig. 4).
- :func:`plot_ratio_curves` -- metric vs training ratio per architecture (Figs. 5-7).
- :func:`plot_scales` -- one setting at two run scales (demo-sized and at the paper's decay), range bars.
- :func:`bar_with_ci` -- bars of means with confidence intervals.
- :func:`plot_confusion_diff` -- one readable confusion matrix and each method's difference to it.
- :func:`plot_methods_ci` -- Table 5 as a chart: mean and 95 % CI per method, one panel per protocol.
- :func:`plot_architecture` -- a model's layers as a diagram, drawn from its own forward pass.
- :func:`plot_verdict` -- one question's paired differences with the interval of each design.

One style for the book (:data:`THEME`, set by ``nb.setup`` through :func:`apply_theme`): figures
at most :data:`MAX_WIDTH` inches wide (the book's content column), 150 dpi, one font size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from smoothdistill_lib.analyses import role_name
from smoothdistill_lib.methods import METHODS, known_first
from smoothdistill_lib.models import MODELS, describe
from smoothdistill_lib.stats import summary
from smoothdistill_lib.verdicts import DATASET_NAMES, PROTOCOL_NAMES

PANEL_W, PANEL_H = 2.7, 2.2  # inches per panel: compact figures for a book page
#: the width of the book's content column in inches (at 150 dpi a figure is shown at about its
#: drawn size there): no figure is wider, so no text in it is shrunk below the body font
MAX_WIDTH = 7.0
#: the book's figure style (nb.setup applies it): sized for the content column, 150 dpi PNG
THEME = {"figure.figsize": (6.0, 3.2), "figure.dpi": 150, "savefig.dpi": 150, "font.size": 9,
         "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
         "legend.fontsize": 8, "figure.autolayout": False, "figure.constrained_layout.use": True,
         "axes.spines.top": False, "axes.spines.right": False}


def apply_theme() -> None:
    """Set :data:`THEME` in matplotlib's rcParams (pyplot figures of the chapters follow it too)."""
    sns.set_theme(context="paper", style="ticks", rc=THEME)
    mpl.rcParams.update(THEME)


def _t_ci(values) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: t-based 95 % interval of the mean (a point for one value)."""
    s = summary(values)
    return (s["mean"], s["mean"]) if s["n"] < 2 else (s["ci_low"], s["ci_high"])


def _figure(nrows: int, ncols: int, sharey: str | bool = False, sharex: str | bool = False):
    width = min(PANEL_W * ncols, MAX_WIDTH)
    height = PANEL_H * nrows * (width / (PANEL_W * ncols)) ** 0.5 + 0.5  # narrower panels: a bit lower
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex)
    return fig, axes


def _need(df: pd.DataFrame, cols: Sequence[str | None], what: str) -> None:
    missing = [c for c in cols if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"{what}: columns {missing} not in the table; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def _order(values, preferred: Sequence[str] = tuple(METHODS)) -> list:
    return known_first(values, preferred)


def _figure_legend(fig: Figure, axes, drop: Sequence[str] = ()) -> None:
    """One legend for the figure, below the panels, from the first panel that has one.

    ``drop``: entries to leave out (seaborn adds the hue/style variable names as pseudo-entries).
    """
    for ax in axes.flat:
        leg = ax.get_legend()
        if leg is not None:
            pairs = [(h, lab) for h, lab in zip(*ax.get_legend_handles_labels(), strict=True) if lab not in drop]
            for a in axes.flat:
                if a.get_legend() is not None:
                    a.get_legend().remove()
            fig.legend([h for h, _ in pairs], [lab for _, lab in pairs], loc="outside lower center",
                       ncols=min(len(pairs), 4), frameon=False)
            return


# --------------------------------------------------------------------------------------------
# Fig. 8: training curves

_PANELS = (("train", "loss"), ("val", "loss"), ("train", "acc"), ("val", "acc"))
_SPLIT_LABEL = {"train": "train", "val": "validation"}


def _history_column(df: pd.DataFrame, who: str, split: str, metric: str, task: int) -> str | None:
    """The column of one curve, tolerant to naming (engine: ``[teacher_]val_acc_task1``)."""
    w = "teacher_" if who == "teacher" else ""
    metrics = ("acc", "accuracy") if metric == "acc" else ("loss",)
    for m in metrics:
        for t in (f"task{task}", f"t{task}", f"{task}"):
            for name in (f"{w}{split}_{m}_{t}", f"{w}{split}_{m}{t}", f"{split}_{w}{m}_{t}"):
                if name in df.columns and df[name].notna().any():
                    return name
    return None


def _as_frame(h) -> pd.DataFrame:
    return h if isinstance(h, pd.DataFrame) else pd.DataFrame(list(h))


def _long_history(histories: Mapping, tasks: Sequence[int], stage) -> pd.DataFrame:
    rows = []
    for method, hist in histories.items():
        runs = hist if isinstance(hist, list | tuple) and hist and not isinstance(hist[0], Mapping) else [hist]
        for run_id, h in enumerate(runs):
            df = _as_frame(h)
            if "stage" in df.columns and df["stage"].nunique() > 1:
                # born_again: stage 1 trains the teacher, stage 2 the student that is evaluated
                df = df[df["stage"] == (df["stage"].max() if stage == "last" else stage)]
            epoch = df["epoch"] if "epoch" in df.columns else pd.Series(np.arange(1, len(df) + 1), index=df.index)
            for task in tasks:
                for split, metric in _PANELS:
                    for who in ("student", "teacher"):
                        col = _history_column(df, who, split, metric, task)
                        if col is None:
                            continue
                        rows.append(pd.DataFrame({"method": str(method), "who": who, "run": run_id, "task": task,
                                                  "split": split, "metric": metric, "epoch": epoch.to_numpy(),
                                                  "value": df[col].to_numpy(dtype=float)}))
    if not rows:
        raise ValueError("plot_history: no curve columns found (expected e.g. train_loss_task1, "
                         "val_acc_task1, teacher_val_acc_task1)")
    return pd.concat(rows, ignore_index=True).dropna(subset=["value"])


def plot_history(
    histories,
    tasks: Sequence[int] = (1, 2),
    task_names: Sequence[str] | None = None,
    stage: int | str = "last",
    title: str | None = None,
) -> Figure:
    """Training curves in the layout of the paper's Fig. 8.

    ``histories``: one engine ``history`` DataFrame, a ``{method: history}`` dict, or
    ``{method: [history, ...]}`` (several runs: mean line and 95 % CI band). A history may also be
    a list of row dicts (as stored in run records). Columns = tasks, rows = train loss, validation
    loss, train accuracy, validation accuracy (those present); colour = method, dashed = the EMA
    teacher where the history has ``teacher_*`` columns. Born-again histories show the last stage
    (``stage`` picks another).
    """
    if isinstance(histories, pd.DataFrame) or (isinstance(histories, list | tuple) and histories
                                                and isinstance(histories[0], Mapping)):
        histories = {"": histories}
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("plot_history: pass a history DataFrame or a non-empty {method: history} dict")
    long = _long_history(histories, tasks, stage)
    present_tasks = [t for t in tasks if t in set(long["task"])]
    panels = [p for p in _PANELS if ((long["split"] == p[0]) & (long["metric"] == p[1])).any()]
    methods = _order(long["method"])
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=True))
    # rows = curves (loss, accuracy; train, validation), columns = tasks: two wide panels per row
    # stay readable in the content column, where eight small ones in two rows did not
    fig = Figure(figsize=(MAX_WIDTH, 1.75 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), len(present_tasks), squeeze=False, sharex=True)
    names = list(task_names) if task_names else [f"task {t}" for t in tasks]
    for c, task in enumerate(present_tasks):
        for r, (split, metric) in enumerate(panels):
            ax = axes[r, c]
            d = long[(long["task"] == task) & (long["split"] == split) & (long["metric"] == metric)]
            if d.empty:
                ax.set_visible(False)
                continue
            sns.lineplot(data=d, x="epoch", y="value", hue="method", hue_order=methods, palette=palette,
                         style="who", style_order=["student", "teacher"], errorbar=_t_ci,
                         ax=ax, legend=(r == 0 and c == 0) and (len(methods) > 1 or d["who"].nunique() > 1),
                         linewidth=1.2)
            label = "loss" if metric == "loss" else "accuracy (%)"
            ax.set_title(f"{names[tasks.index(task)]}: {_SPLIT_LABEL[split]} {label.split(' ')[0]}")
            ax.set_ylabel(label if c == 0 else "")
            ax.set_xlabel("epoch" if r == len(panels) - 1 else "")
    if title:
        fig.suptitle(title)
    _figure_legend(fig, axes, drop=("method", "who"))
    return fig


# --------------------------------------------------------------------------------------------
# Fig. 3: confusion matrices


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 100.0 * cm / np.where(rows > 0, rows, 1), np.nan)


def plot_confusion(
    confusion,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
    annotate: bool | None = None,
) -> Figure:
    """Confusion matrix heatmap(s): rows = true class, columns = predicted class.

    ``confusion``: a C x C matrix (list of lists or array) or ``{name: matrix}`` for one panel each
    (e.g. the five methods of Fig. 3). ``normalize``: each row in percent of its true class (a row
    with no samples stays blank). ``annotate`` defaults to True for C <= 13.
    """
    mats = dict(confusion) if isinstance(confusion, Mapping) else {title or "": confusion}
    mats = {k: np.asarray(v, dtype=float) for k, v in mats.items()}
    if not mats:
        raise ValueError("plot_confusion: no matrix given")
    c = next(iter(mats.values())).shape[0]
    for name, m in mats.items():
        if m.ndim != 2 or m.shape != (c, c):
            raise ValueError(f"plot_confusion: matrix {name!r} has shape {m.shape}, expected ({c}, {c})")
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"plot_confusion: {len(names)} class names for {c} classes")
    annotate = c <= 13 if annotate is None else annotate
    side = min(max(2.6, 0.28 * c + 1.2), (MAX_WIDTH - 0.6) / len(mats))
    fig = Figure(figsize=(side * len(mats) + 0.6, side), layout="constrained")
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    for k, (name, m) in enumerate(mats.items()):
        data = _row_normalise(m) if normalize else m
        last = k == len(mats) - 1
        sns.heatmap(data, ax=axes[k], cmap="Blues", vmin=0, vmax=100 if normalize else None, square=True,
                    annot=annotate, fmt=".0f", annot_kws={"fontsize": 6}, cbar=last,
                    cbar_kws={"label": "% of true class" if normalize else "count", "shrink": 0.8},
                    xticklabels=names, yticklabels=names if k == 0 else False)
        axes[k].set_xlabel("predicted")
        axes[k].set_ylabel("true" if k == 0 else "")
        axes[k].tick_params(labelsize=6)
        if name:
            axes[k].set_title(str(name), fontsize="small")
    return fig


# --------------------------------------------------------------------------------------------
# Figs. 4-7: metric vs a setting, mean and CI over runs


#: ``errorbar`` choices of the line figures: a t interval of the mean over runs (seeds on one split),
#: or the range of the runs, lowest to highest (seaborn's 100 % percentile interval), which claims no
#: inference and so fits any design
ERRORBARS = {"t95": _t_ci, "range": ("pi", 100)}


def _facets(d: pd.DataFrame, row: str | None, col: str | None) -> tuple[list, list]:
    """The panel rows and columns of ``d``: the sorted values of ``row`` and ``col`` (``[None]`` without)."""
    return (sorted(d[row].unique(), key=str) if row else [None],
            sorted(d[col].unique(), key=str) if col else [None])


def _panels(d: pd.DataFrame, axes, row: str | None, rows: list, col: str | None, cols: list):
    """Yield ``(i, j, ax, sub, rv, cv)`` for each panel that has data (``sub``: its rows of ``d``);
    a panel without data is hidden rather than drawn empty."""
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            sub = d
            if row:
                sub = sub[sub[row] == rv]
            if col:
                sub = sub[sub[col] == cv]
            if sub.empty:
                axes[i, j].set_visible(False)
                continue
            yield i, j, axes[i, j], sub, rv, cv


def _facet_lines(df, x, y, hue, col, row, categorical_x: bool, xlabel: str, ylabel: str, what: str,
                 hue_order: Sequence | None = None, errorbar: str = "t95") -> Figure:
    _need(df, [x, y, hue, col, row], what)
    if errorbar not in ERRORBARS:
        raise ValueError(f"{what}: errorbar={errorbar!r}; choose one of {sorted(ERRORBARS)}")
    d = df.dropna(subset=[y]).copy()
    rows, cols = _facets(d, row, col)
    hues = list(hue_order) if hue_order else (_order(d[hue].astype(str)) if hue else None)
    if hue:
        d[hue] = d[hue].astype(str)
    xs = sorted(d[x].unique())
    names = categorical_x and all(isinstance(v, str) for v in xs)
    if names:  # names (architectures): the registry's order, and points only (a line would imply an order)
        xs = known_first(xs, tuple(MODELS))
    if categorical_x:  # evenly spaced, so lambda = 0 and 0.001 are both visible (no log of 0)
        d["_x"] = d[x].map({v: i for i, v in enumerate(xs)})
    fig, axes = _figure(len(rows), len(cols), sharey="row")
    for i, j, ax, sub, rv, cv in _panels(d, axes, row, rows, col, cols):
        sns.lineplot(data=sub, x="_x" if categorical_x else x, y=y, hue=hue, hue_order=hues,
                     errorbar=ERRORBARS[errorbar], err_style="bars", marker="o", markersize=4,
                     linewidth=1.2, linestyle="" if names else "-", ax=ax,
                     legend=(i == 0 and j == 0) and hue is not None,
                     palette=sns.color_palette("tab10", len(hues)) if hue else None)
        if categorical_x:
            ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, int | float) else str(v) for v in xs])
        parts = [f"{row} {rv}" if row else "", f"{col} {cv}" if col else ""]
        ax.set_title(", ".join(p for p in parts if p), fontsize="small")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if j == 0 else "")
    _figure_legend(fig, axes, drop=(hue,))
    return fig


def plot_lambda_sweep(
    df: pd.DataFrame,
    x: str = "lam",
    y: str = "accuracy",
    hue: str | None = "dataset",
    col: str | None = "task",
    row: str | None = None,
) -> Figure:
    """Fig. 4: ``y`` (e.g. test accuracy, %) against the distillation weight lambda.

    ``df`` tidy, one row per run (seed x fold) and setting; lines = ``hue`` (datasets), panels =
    ``col`` (tasks), points = mean over runs with 95 % t-CI bars. Lambda values are evenly spaced.
    """
    return _facet_lines(df, x, y, hue, col, row, True, "λ (distillation weight)", f"{y} (%)",
                        "plot_lambda_sweep")


def plot_ratio_curves(
    df: pd.DataFrame,
    x: str = "train_ratio",
    y: str = "accuracy",
    hue: str | None = "model",
    col: str | None = "task",
    row: str | None = "dataset",
) -> Figure:
    """Figs. 5-7: ``y`` against the fraction of training data used, one line per architecture.

    ``df`` tidy, one row per run; panels = ``row`` (datasets) x ``col`` (tasks); mean and 95 %
    t-CI over seeds. The paper has one figure per dataset: filter ``df`` or keep ``row``.
    """
    order = _order(df[hue].astype(str), tuple(MODELS)) \
        if hue and hue in df.columns else None
    return _facet_lines(df, x, y, hue, col, row, False, "training ratio", f"{y} (%)", "plot_ratio_curves",
                        hue_order=order)


def plot_scales(
    df: pd.DataFrame,
    x: str,
    xlabel: str,
    y: str = "accuracy",
    col: str | None = "task",
    categorical_x: bool = True,
) -> Figure:
    """One setting (``x``: lambda, training ratio, architecture) at two run scales, side by side on the
    same axes: one line per ``scale`` (:func:`analyses.at_scales`), one panel per ``col`` (tasks).

    Points are means over runs and bars their range (lowest to highest run): the grids differ in
    design (seeds on one split, resamples of split and seed), and a range claims no interval for
    either. Paired differences with their design's interval are :mod:`verdicts`' job.
    """
    return _facet_lines(df, x, y, "scale", col, None, categorical_x, xlabel, f"{y} (%)", "plot_scales",
                        errorbar="range")


def bar_with_ci(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Bars of the mean of ``y`` per ``x`` (and ``hue``) with 95 % t-CI error bars, one panel.

    Methods in ``x``/``hue`` come in the paper's order (singletask ... smooth_distill).
    """
    _need(df, [x, y, hue], "bar_with_ci")
    d = df.dropna(subset=[y]).copy()
    d[x] = d[x].astype(str)
    xo = _order(d[x])
    ho = None
    if hue:
        d[hue] = d[hue].astype(str)
        ho = _order(d[hue])
    fig = Figure(figsize=(max(PANEL_W, 0.55 * len(xo) * (len(ho) if ho else 1) + 1.0), PANEL_H + 0.4),
                 layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=d, x=x, y=y, hue=hue, order=xo, hue_order=ho, errorbar=_t_ci, capsize=0.15,
                err_kws={"linewidth": 1}, ax=ax, palette="tab10" if hue else None)
    ax.set_ylabel(ylabel or y)
    ax.set_xlabel("")
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    if hue:
        _figure_legend(fig, np.array([[ax]]), drop=(hue,))
    return fig


# --------------------------------------------------------------------------------------------
# Paired effects with their intervals (the long-mode grid)


def plot_verdict(tables: Mapping[str, pd.DataFrame], question: str, title: str | None = None) -> Figure:
    """One question of the verdicts (:func:`verdicts.compare` tables) as a figure with its own scale:
    for every case (dataset, protocol, task) the mean difference A - B in points with its 95 %
    interval, one colour per table (e.g. ``{"one split, 3 seeds": fixed, "5 resamples": cv}``),
    dodged so both designs sit side by side. The dashed line is "no difference": an interval
    that crosses it means the data cannot tell."""
    rows = {k: t[t["question"] == question] for k, t in tables.items()}
    rows = {k: t for k, t in rows.items() if len(t)}
    if not rows:
        raise ValueError(f"plot_verdict: no rows for {question!r}")
    cases = sorted({(r.dataset, r.protocol, int(r.task)) for t in rows.values() for r in t.itertuples()})
    labels = [f"{DATASET_NAMES.get(d, d)}, {PROTOCOL_NAMES.get(p, p)}, task {k}" for d, p, k in cases]
    fig = Figure(figsize=(min(MAX_WIDTH, 6.0), 0.42 * len(cases) + 1.0), layout="constrained")
    ax = fig.subplots()
    y0 = np.arange(len(cases))[::-1].astype(float)
    width = 0.5 / max(1, len(rows))
    colours = sns.color_palette("colorblind", len(rows))
    for i, ((label, t), colour) in enumerate(zip(rows.items(), colours)):
        pos = {c: y0[j] - (i - (len(rows) - 1) / 2) * width * 1.6 for j, c in enumerate(cases)}  # first on top
        y = np.array([pos[(r.dataset, r.protocol, int(r.task))] for r in t.itertuples()])
        ax.hlines(y, t["ci_low"], t["ci_high"], color=colour, lw=2.2, alpha=0.8)
        ax.plot(t["effect"], y, "o", color=colour, label=label, ms=4.5)
    ax.axvline(0, color="0.35", lw=0.8, ls="--")
    ax.set_yticks(y0, labels)
    first = rows[next(iter(rows))].iloc[0]
    ax.set_xlabel(f"{role_name(first['a'])} − {role_name(first['b'])} (test accuracy, points; 95 % interval)")
    ax.set_title(title or question, loc="left")
    fig.legend(loc="outside lower center", ncols=len(rows), frameon=False)
    return fig


# Fig. 3, readable: one matrix in full, the other methods as differences to it


def plot_confusion_diff(
    confusion: Mapping,
    class_names: Sequence[str],
    baseline: str = "multitask",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """The ``baseline``'s row-normalised confusion matrix, large and annotated (left), and for
    every other method its matrix minus the baseline's, in percentage points (right, a grid of
    small multiples on one diverging scale: red = more windows in that cell than the baseline).

    ``confusion``: ``{method: C x C counts}`` (e.g. :func:`analyses.confusion_sums`). ``labels``:
    display names per method (default the keys). Rows = true class, columns = predicted class.
    """
    if baseline not in confusion:
        raise ValueError(f"plot_confusion_diff: baseline {baseline!r} not in {list(confusion)}")
    mats = {k: _row_normalise(np.asarray(v, dtype=float)) for k, v in confusion.items()}
    c = mats[baseline].shape[0]
    if len(class_names) != c:
        raise ValueError(f"plot_confusion_diff: {len(class_names)} class names for {c} classes")
    labels = dict(labels or {})
    others = [m for m in _order(list(mats)) if m != baseline]
    names = [str(n) for n in class_names]
    fig = Figure(figsize=(MAX_WIDTH, MAX_WIDTH * 0.5 + 0.9), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.0])
    ax = left.subplots()
    sns.heatmap(mats[baseline], ax=ax, cmap="Blues", vmin=0, vmax=100, square=True, annot=c <= 13, fmt=".0f",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "% of true class", "shrink": 0.7,
                                                     "location": "bottom", "pad": 0.2},
                xticklabels=names, yticklabels=names)
    ax.set_title(labels.get(baseline, baseline))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(labelsize=6)
    if not others:
        return fig
    ncols = 2 if len(others) > 1 else 1
    nrows = int(np.ceil(len(others) / ncols))
    axes = right.subplots(nrows, ncols, squeeze=False)
    diffs = {m: mats[m] - mats[baseline] for m in others}
    lim = max(5.0, float(np.nanmax([np.nanmax(np.abs(d)) for d in diffs.values()])))
    for k, m in enumerate(others):
        a = axes.flat[k]
        sns.heatmap(diffs[m], ax=a, cmap="RdBu_r", vmin=-lim, vmax=lim, square=True, cbar=False,
                    xticklabels=False, yticklabels=False)
        a.set_title(f"{labels.get(m, m)}\nminus {labels.get(baseline, baseline)}", fontsize=7)
    for a in list(axes.flat)[len(others):]:
        a.set_visible(False)
    mappable = axes.flat[0].collections[0]
    right.colorbar(mappable, ax=axes, location="bottom", shrink=0.8, label="difference (percentage points)")
    return fig


# --------------------------------------------------------------------------------------------
# Table 5 as a chart


def plot_methods_ci(
    df: pd.DataFrame,
    y: str = "accuracy",
    method: str = "method",
    row: str | None = "dataset",
    col: str | None = "protocol",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Mean of ``y`` per method with its 95 % t-confidence interval over runs, one panel per
    ``row`` x ``col`` (e.g. dataset x protocol); methods in the paper's order, top to bottom.

    ``df``: tidy, one row per run (filter the split, task and ``who`` first). Each panel has its
    own x range: the datasets' accuracies differ by tens of points, the methods by a few.
    """
    _need(df, [y, method, row, col], "plot_methods_ci")
    d = df.dropna(subset=[y]).copy()
    d[method] = d[method].astype(str)
    order = _order(d[method])
    rows, cols = _facets(d, row, col)
    fig = Figure(figsize=(MAX_WIDTH, (0.28 * len(order) + 0.7) * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharey=True)
    labels = dict(labels or {})
    for i, _j, ax, sub, rv, cv in _panels(d, axes, row, rows, col, cols):
        for k, m in enumerate(order):
            s = summary(sub.loc[sub[method] == m, y])
            if s["n"] == 0:
                continue
            lo, hi = (s["ci_low"], s["ci_high"]) if s["n"] > 1 else (s["mean"], s["mean"])
            ax.errorbar(s["mean"], k, xerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o", capsize=3,
                        color=sns.color_palette("tab10")[k % 10], markersize=4)
        ax.set_yticks(range(len(order)), [labels.get(m, m) for m in order])
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        parts = [f"{rv}" if row else "", f"{cv} protocol" if col == "protocol" else (f"{cv}" if col else "")]
        ax.set_title(", ".join(p for p in parts if p))
        ax.set_xlabel(f"{y} (%), mean and 95 % CI" if i == len(rows) - 1 else "")
    return fig


# --------------------------------------------------------------------------------------------
# the model, drawn from its own layers


def plot_architecture(model, input_shape: tuple[int, ...] | None = None, title: str | None = None) -> Figure:
    """A block diagram of ``model``: one box per leaf layer of a real forward pass
    (:func:`models.describe`), with its output shape and parameter count, top to bottom; the
    heads side by side at the bottom. Drawn from the model itself, it cannot drift from the code.
    """
    t = describe(model, input_shape)
    heads = t[t["layer"].str.startswith("heads.")]
    trunk = t[~t["layer"].str.startswith("heads.")]
    shape_in = input_shape or (1, 1, getattr(model, "n_channels", 3), getattr(model, "fixed_length", None) or 100)
    n = len(trunk) + 2
    fig = Figure(figsize=(MAX_WIDTH, 0.42 * n + 0.4), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(n, -0.5)
    ax.axis("off")
    colours = {"Conv2d": "#c6dbef", "Linear": "#fdd0a2", "MaxPool2d": "#e5e5e5", "ReLU": "#f7f7f7",
               "Flatten": "#f7f7f7", "Dropout": "#f7f7f7", "BatchNorm2d": "#d9f0d3", "LSTM": "#c6dbef",
               "GRU": "#c6dbef"}

    def box(x, y, w, text, colour):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.32), w, 0.64, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="#555555", linewidth=0.6))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1 - 0.33), xytext=(x0, y0 + 0.33),
                    arrowprops={"arrowstyle": "-|>", "lw": 0.6, "color": "#555555"})

    def shape(s):
        return " × ".join(str(v) for v in tuple(s)[1:])

    box(5, 0, 6.4, f"input window  {shape(shape_in)}", "#ffffff")
    for k, r in enumerate(trunk.itertuples(index=False), start=1):
        params = f",  {r.parameters:,} params" if r.parameters else ""
        box(5, k, 6.4, f"{r.type}  →  {shape(r.output_shape)}{params}", colours.get(r.type, "#ffffff"))
        arrow(5, k - 1, 5, k)
    y = len(trunk) + 1
    xs = np.linspace(2.5, 7.5, len(heads)) if len(heads) > 1 else [5.0]
    for k, (x, r) in enumerate(zip(xs, heads.itertuples(index=False), strict=True)):
        box(x, y, 4.2 if len(heads) > 1 else 6.4,
            f"head {k + 1}: {r.type} → {shape(r.output_shape)},  {r.parameters:,} params", "#fdae6b")
        arrow(5, y - 1, x, y)
    if title:
        ax.set_title(title)
    return fig
