"""Plots: each function returns a Figure with the expected panels and labels on small inputs."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from smoothdistill_lib.plots import (  # noqa: E402
    _facet_lines,
    bar_with_ci,
    plot_confusion,
    plot_history,
    plot_lambda_sweep,
    plot_ratio_curves,
    plot_scales,
)


def _visible(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


def _history(epochs=4, teacher=False, stages=1, seed=0) -> pd.DataFrame:
    """A history with the engine's column names (engine.FitResult docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for stage, e in itertools.product(range(1, stages + 1), range(1, epochs + 1)):
        row = {"epoch": e, "stage": stage, "train_loss": 1 / e}
        for k in (1, 2):
            row |= {f"train_loss_task{k}": 1 / e + rng.random() * 0.1, f"val_loss_task{k}": 1.1 / e,
                    f"train_acc_task{k}": 50 + 10 * e, f"val_acc_task{k}": 45 + 10 * e + stage,
                    f"teacher_val_acc_task{k}": (44 + 10 * e) if teacher else np.nan,
                    f"teacher_val_loss_task{k}": (1.2 / e) if teacher else np.nan}
        rows.append(row)
    return pd.DataFrame(rows)


def test_plot_history_layout_methods_and_teacher():
    hist = {"multitask": _history(), "smooth_distill": _history(teacher=True), "born_again": _history(stages=2)}
    fig = plot_history(hist, task_names=("activity", "placement"))
    assert isinstance(fig, Figure)
    axes = _visible(fig)
    assert len(axes) == 8  # 2 tasks x (train loss, val loss, train acc, val acc)
    titles = [ax.get_title() for ax in axes]  # rows = curves, columns = tasks (two wide panels a row)
    assert titles[::2] == ["activity: train loss", "activity: validation loss", "activity: train accuracy",
                           "activity: validation accuracy"]
    assert all(t.startswith("placement") for t in titles[1::2])
    assert axes[4].get_ylabel() == "accuracy (%)" and axes[6].get_xlabel() == "epoch"
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert {"multitask", "born_again", "smooth_distill", "teacher"} <= set(labels)
    # the methods appear in the paper's order in the legend
    assert labels.index("multitask") < labels.index("born_again") < labels.index("smooth_distill")
    # validation-accuracy panel of task 1: 3 students + 1 teacher line
    assert len(axes[6].get_lines()) >= 4


def test_plot_history_single_frame_records_and_runs():
    fig = plot_history(_history().to_dict(orient="records"), tasks=(1,))
    assert len(_visible(fig)) == 4 and not fig.legends
    # several runs per method: mean line with a CI band (a PolyCollection)
    fig = plot_history({"multitask": [_history(seed=0), _history(seed=1)]}, tasks=(1,))
    assert any(len(ax.collections) > 0 for ax in _visible(fig)[:1])
    # only accuracy columns: only the accuracy panels
    acc_only = _history()[["epoch", "train_acc_task1", "val_acc_task1"]]
    assert len(_visible(plot_history(acc_only, tasks=(1,)))) == 2
    with pytest.raises(ValueError, match="no curve columns"):
        plot_history(pd.DataFrame({"epoch": [1], "foo": [2]}))


def test_plot_confusion_normalised_panels():
    cm = [[8, 2, 0], [1, 9, 0], [0, 0, 0]]
    fig = plot_confusion(cm, ["up", "left", "down"], title="smooth_distill")
    heat = fig.axes[0]
    assert heat.get_title() == "smooth_distill" and heat.get_xlabel() == "predicted"
    assert [t.get_text() for t in heat.get_xticklabels()] == ["up", "left", "down"]
    values = heat.collections[0].get_array()
    assert np.asarray(values).reshape(-1)[:2].tolist() == [80.0, 20.0]
    texts = [t.get_text() for t in heat.texts]
    assert "80" in texts and "90" in texts
    assert len(fig.axes) == 2  # heatmap + colourbar
    fig = plot_confusion({"multitask": cm, "born_again": cm, "smooth_distill": cm}, ["a", "b", "c"])
    assert len(fig.axes) == 4 and fig.axes[2].get_title() == "smooth_distill"
    with pytest.raises(ValueError, match="expected"):
        plot_confusion({"a": cm, "b": [[1, 2], [3, 4]]})
    with pytest.raises(ValueError, match="2 class names for 3"):
        plot_confusion(cm, ["a", "b"])


def _sweep() -> pd.DataFrame:
    rows = []
    for ds, task, lam, seed in itertools.product(["sleepsim", "wisdm"], [1, 2], [0, 0.001, 0.1, 0.5, 1.0], range(3)):
        rows.append({"dataset": ds, "task": task, "lam": lam, "seed": seed, "accuracy": 60 + 10 * lam + seed})
    return pd.DataFrame(rows)


def test_plot_lambda_sweep():
    fig = plot_lambda_sweep(_sweep())
    axes = _visible(fig)
    assert len(axes) == 2 and [ax.get_title() for ax in axes] == ["task 1", "task 2"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0", "0.001", "0.1", "0.5", "1"]
    assert axes[0].get_ylabel() == "accuracy (%)" and axes[0].get_xlabel().startswith("λ")
    assert {t.get_text() for leg in fig.legends for t in leg.get_texts()} >= {"sleepsim", "wisdm"}
    # mean of seeds 0..2 at lambda = 1: 70 + 1 = 71
    line = axes[0].get_lines()[0]
    assert line.get_ydata()[-1] == pytest.approx(71.0)
    with pytest.raises(ValueError, match="columns \\['lambda'\\]"):
        plot_lambda_sweep(_sweep(), x="lambda")


def test_plot_ratio_curves_grid():
    rows = []
    for ds, task, model, ratio, seed in itertools.product(["sleepsim", "wisdm"], [1, 2], ["gru", "mtlnet", "lstm"],
                                                          [0.1, 0.5, 0.9], range(2)):
        rows.append({"dataset": ds, "task": task, "model": model, "train_ratio": ratio, "seed": seed,
                     "accuracy": 50 + 40 * ratio + seed})
    fig = plot_ratio_curves(pd.DataFrame(rows))
    axes = _visible(fig)
    assert len(axes) == 4  # 2 datasets x 2 tasks
    assert axes[0].get_title() == "dataset sleepsim, task 1" and axes[0].get_xlabel() == "training ratio"
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert labels == ["mtlnet", "lstm", "gru"]  # architecture order, not input order
    one = plot_ratio_curves(pd.DataFrame(rows).query("dataset == 'wisdm'"), row=None)
    assert len(_visible(one)) == 2
    # a panel without runs (no task 2 on sleepsim) is hidden, not drawn empty
    gap = plot_ratio_curves(pd.DataFrame(rows).query("not (dataset == 'sleepsim' and task == 2)"))
    assert [ax.get_title() for ax in _visible(gap)] == ["dataset sleepsim, task 1", "dataset wisdm, task 1",
                                                        "dataset wisdm, task 2"]


def test_bar_with_ci():
    df = pd.DataFrame({"method": ["smooth_distill"] * 3 + ["singletask"] * 3,
                       "energy": [1.0, 1.2, 1.1, 2.0, 2.2, 2.1]})
    fig = bar_with_ci(df, "method", "energy", ylabel="kWh")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["singletask", "smooth_distill"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([2.1, 1.1])
    assert ax.get_ylabel() == "kWh" and len(ax.get_lines()) >= 2  # error bars drawn
    df["task"] = [1, 2, 1, 1, 2, 1]
    fig = bar_with_ci(df, "method", "energy", hue="task")
    assert {t.get_text() for leg in fig.legends for t in leg.get_texts()} == {"1", "2"}
    with pytest.raises(ValueError, match="empty"):
        bar_with_ci(df.iloc[:0], "method", "energy")


# ---- the book's style, readable Fig. 3, Table 5 chart, architecture ------------------------------

def test_figures_fit_the_content_column():
    from smoothdistill_lib.plots import MAX_WIDTH

    many = {m: _history(seed=i) for i, m in enumerate(["singletask", "multitask", "sdd", "born_again"])}
    assert plot_history(many).get_size_inches()[0] <= MAX_WIDTH
    cms = {m: np.eye(12) * 50 + 1 for m in ["a", "b", "c", "d", "e"]}
    assert plot_confusion(cms).get_size_inches()[0] <= MAX_WIDTH


def test_plot_confusion_diff_baseline_large_and_differences():
    from smoothdistill_lib.plots import plot_confusion_diff

    base = np.eye(4) * 60 + 10  # rows sum to 100: counts = percent of the true class
    other = base.copy()
    other[0, 0], other[0, 1] = 60, 20  # 10 points moved from correct to class 1 in row 0
    fig = plot_confusion_diff({"multitask": base, "smooth_distill": other, "sdd": base}, list("abcd"))
    heat = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    titles = [ax.get_title() for ax in heat]
    assert titles[0] == "multitask" and any(t.startswith("smooth_distill\nminus") for t in titles)
    diff = next(ax for ax in heat if ax.get_title().startswith("smooth_distill")).collections[0].get_array()
    row0 = np.asarray(diff).reshape(4, 4)[0]
    assert np.allclose(row0[:2], [-10, 10]) and np.allclose(row0[2:], 0)
    with pytest.raises(ValueError, match="baseline"):
        plot_confusion_diff({"sdd": base}, list("abcd"))


def test_plot_methods_ci_one_panel_per_protocol_and_interval():
    from smoothdistill_lib.plots import plot_methods_ci
    from smoothdistill_lib.stats import summary

    rows = [{"dataset": "wisdm", "protocol": p, "method": m, "accuracy": 60 + k + s}
            for p in ("paper", "subject") for k, m in enumerate(["multitask", "smooth_distill"]) for s in range(3)]
    fig = plot_methods_ci(pd.DataFrame(rows))
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["wisdm, paper protocol", "wisdm, subject protocol"]
    s = summary([61, 62, 63])
    line = axes[0].lines  # errorbar: the point, then caps
    assert any(np.isclose(ln.get_xdata()[0], 62) for ln in line)
    caps = sorted({round(float(x), 6) for ln in line for x in np.atleast_1d(ln.get_xdata())})
    assert round(s["ci_low"], 6) in caps and round(s["ci_high"], 6) in caps


def test_plot_architecture_draws_every_layer_of_the_model():
    from smoothdistill_lib.models import build_model, describe
    from smoothdistill_lib.plots import plot_architecture

    model = build_model("mtlnet", (12, 3))
    fig = plot_architecture(model)
    texts = [t.get_text() for t in fig.axes[0].texts if t.get_text()]  # arrows are empty annotations
    assert len(texts) == len(describe(model)) + 1  # the input and one box per layer
    assert texts[0] == "input window  1 × 3 × 100"
    assert any("Linear  →  1024,  1,246,208 params" == t for t in texts)
    assert [t for t in texts if t.startswith("head")] == ["head 1: Linear → 12,  6,156 params",
                                                          "head 2: Linear → 3,  1,539 params"]


def test_plot_scales_draws_both_scales_on_one_axis_with_range_bars():
    rows = []
    for scale, base in (("demo: a = 0.97, 80 steps", 60.0), ("long: a = 0.999, 10,000 steps", 80.0)):
        for model, seed in itertools.product(["lstm", "mtlnet", "anponet"], range(3)):
            rows.append({"scale": scale, "model": model, "task": 1, "accuracy": base + 2 * seed})
    fig = plot_scales(pd.DataFrame(rows), x="model", xlabel="architecture")
    axes = _visible(fig)
    assert len(axes) == 1 and axes[0].get_title() == "task 1" and axes[0].get_xlabel() == "architecture"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["mtlnet", "lstm", "anponet"]  # the registry's order
    assert [t.get_text() for leg in fig.legends for t in leg.get_texts()] == [
        "demo: a = 0.97, 80 steps", "long: a = 0.999, 10,000 steps"]
    assert axes[0].get_lines()[0].get_ydata().tolist() == pytest.approx([62.0] * 3)  # mean over seeds
    # architectures are names, not an axis: points, no line joining them
    assert axes[0].get_lines()[0].get_linestyle() in ("None", "")
    # the bars span the runs, lowest to highest (60 to 64), not a t interval (which would be wider)
    segments = [s for coll in axes[0].collections for s in coll.get_segments()]
    spans = sorted({(round(float(s[:, 1].min()), 6), round(float(s[:, 1].max()), 6)) for s in segments})
    assert spans == [(60.0, 64.0), (80.0, 84.0)]
    ratio = pd.DataFrame([{"scale": "demo", "train_ratio": r, "task": 1, "accuracy": 50 + 10 * r} for r in (0.1, 0.5)])
    assert _visible(plot_scales(ratio, x="train_ratio", xlabel="ratio", categorical_x=False))[0].get_lines()[0].get_linestyle() == "-"
    with pytest.raises(ValueError, match="errorbar='sd'"):
        _facet_lines(pd.DataFrame(rows), "model", "accuracy", "scale", None, None, True, "", "", "f", errorbar="sd")
