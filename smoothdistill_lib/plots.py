"""Compact seaborn figures for the chapters (paper Figs. 3-8). Every function returns a Figure.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: nothing is shown or kept in
pyplot's global registry (a notebook displays the returned figure once; ``glue`` can store it).
Error bars and bands are **t-based 95 % confidence intervals of the mean** over runs
(:func:`stats.summary`), the same intervals as the tables, not seaborn's default bootstrap.

- :func:`plot_history` -- training curves (Fig. 8) from engine ``history`` tables.
- :func:`plot_confusion` -- row-normalised confusion matrices (Fig. 3).
- :func:`plot_lambda_sweep` -- metric vs distillation weight lambda (Fig. 4).
- :func:`plot_ratio_curves` -- metric vs training ratio per architecture (Figs. 5-7).
- :func:`bar_with_ci` -- bars of means with confidence intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from smoothdistill_lib.methods import METHODS, known_first
from smoothdistill_lib.models import MODELS
from smoothdistill_lib.stats import summary

PANEL_W, PANEL_H = 2.7, 2.2  # inches per panel: compact figures for a book page


def _t_ci(values) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: t-based 95 % interval of the mean (a point for one value)."""
    s = summary(values)
    return (s["mean"], s["mean"]) if s["n"] < 2 else (s["ci_low"], s["ci_high"])


def _figure(nrows: int, ncols: int, sharey: str | bool = False):
    fig = Figure(figsize=(PANEL_W * ncols, PANEL_H * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
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
                       ncols=min(len(pairs), 6), frameon=False, fontsize="small")
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
    a list of row dicts (as stored in run records). Rows = tasks, columns = train loss, validation
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
    fig, axes = _figure(len(present_tasks), len(panels))
    names = list(task_names) if task_names else [f"task {t}" for t in tasks]
    for r, task in enumerate(present_tasks):
        for c, (split, metric) in enumerate(panels):
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
            ax.set_title(f"{names[tasks.index(task)]}: {_SPLIT_LABEL[split]} {label.split(' ')[0]}",
                         fontsize="small")
            ax.set_ylabel(label)
            ax.set_xlabel("epoch")
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
    side = max(2.6, 0.28 * c + 1.2)
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


def _facet_lines(df, x, y, hue, col, row, categorical_x: bool, xlabel: str, ylabel: str, what: str,
                 hue_order: Sequence | None = None) -> Figure:
    _need(df, [x, y, hue, col, row], what)
    d = df.dropna(subset=[y]).copy()
    rows = sorted(d[row].unique(), key=str) if row else [None]
    cols = sorted(d[col].unique(), key=str) if col else [None]
    hues = list(hue_order) if hue_order else (_order(d[hue].astype(str)) if hue else None)
    if hue:
        d[hue] = d[hue].astype(str)
    xs = sorted(d[x].unique())
    if categorical_x:  # evenly spaced, so lambda = 0 and 0.001 are both visible (no log of 0)
        d["_x"] = d[x].map({v: i for i, v in enumerate(xs)})
    fig, axes = _figure(len(rows), len(cols), sharey="row")
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = axes[i, j]
            sub = d
            if row:
                sub = sub[sub[row] == rv]
            if col:
                sub = sub[sub[col] == cv]
            if sub.empty:
                ax.set_visible(False)
                continue
            sns.lineplot(data=sub, x="_x" if categorical_x else x, y=y, hue=hue, hue_order=hues,
                         errorbar=_t_ci, err_style="bars", marker="o", markersize=4, linewidth=1.2, ax=ax,
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


def plot_effects(effects: pd.DataFrame, title: str | None = None) -> Figure:
    """Each comparison's mean paired effect (points) with its Nadeau-Bengio 95 % interval (thick)
    and t interval (thin), one panel per (dataset, protocol); the zero line marks "no difference".
    ``effects``: :func:`analyses.convergence_effects`."""
    if effects.empty:
        raise ValueError("plot_effects: no effects to plot (fewer than two paired cells everywhere)")
    cells = list(dict.fromkeys((ds, p) for ds, p, _ in effects.index))
    comps = list(dict.fromkeys(c for _, _, c in effects.index))
    fig = Figure(figsize=(PANEL_W * min(len(cells), 2) + 1.2, 0.45 * len(comps) * math.ceil(len(cells) / 2) + 1.2),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(len(cells) / 2), min(len(cells), 2), sharex=True, sharey=True)).ravel()
    for ax, (ds, p) in zip(axes, cells, strict=False):
        e = effects.loc[(ds, p)].reindex(comps)
        y = np.arange(len(comps))[::-1]
        ok = e["effect"].notna().to_numpy()
        for lo_hi, lw in (("nb_ci", 4), ("ci", 1.2)):
            lo = np.array([v[0] if isinstance(v, tuple) else np.nan for v in e[lo_hi]])
            hi = np.array([v[1] if isinstance(v, tuple) else np.nan for v in e[lo_hi]])
            ax.hlines(y[ok], lo[ok], hi[ok], lw=lw, color="tab:blue", alpha=0.45 if lw > 2 else 0.9)
        ax.plot(e["effect"].to_numpy()[ok], y[ok], "o", color="tab:blue")
        ax.axvline(0, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(y, comps, fontsize="small")
        ax.set_title(f"{ds}, {p} protocol", fontsize="small")
        ax.set_xlabel("difference, points of accuracy")
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
