"""SMLDist: the students (models contract, stages), the three losses, the Hopfield layer, the trainer
and the ablation records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as st
from torch import nn

from smoothdistill_lib import smldist
from smoothdistill_lib.config import project_root
from smoothdistill_lib.models import MODELS, build_model, count_parameters
from smoothdistill_lib.smldist import (
    HopfieldLayer,
    SMLDistConfig,
    conditional_target,
    fit_student,
    hopfield_update,
    logits_loss,
    match_length,
    memory_loss,
    stage_loss,
    stage_pairs,
)
from smoothdistill_lib.students import MobileNetV3Student, SmallCNN, make_divisible

ROOT = project_root()

# ----------------------------------------------------------------------------- students


@pytest.mark.parametrize("name, options", [("mobilenet_v3s", {"width": 0.5}), ("mobilenet_v3s", {}),
                                           ("small_cnn", {})])  # fmt: skip
def test_students_follow_the_models_contract(name, options):
    torch.manual_seed(0)
    net = build_model(name, (18, 2), **options).eval()
    x = torch.randn(5, 1, 3, 100)
    z = net(x)
    assert [t.shape for t in z] == [torch.Size([5, 18]), torch.Size([5, 2])]
    f = net.features(x)
    assert f.shape == (5, net.feature_dim)
    assert isinstance(net.heads, nn.ModuleList)
    for a, b in zip(z, (h(f) for h in net.heads)):
        torch.testing.assert_close(a, b)
    logits, maps, feats = net.forward_with_stages(x)
    torch.testing.assert_close(feats, f)
    assert [m.shape[1] for m in maps] == net.stage_channels
    assert all(m.dim() == 3 and m.shape[0] == 5 for m in maps)
    assert [m.shape for m in maps] == [m.shape for m in net.stages(x)]


def test_student_sizes_follow_the_width_multiplier():
    sizes = {w: count_parameters(build_model("mobilenet_v3s", (18, 2), width=w)) for w in (0.5, 1.0)}
    assert sizes == {0.5: 25788, 1.0: 64652}  # both in the 10k-100k range
    assert count_parameters(build_model("small_cnn", (18, 2))) == 14564
    assert [make_divisible(v) for v in (8, 12, 20, 33.6)] == [8, 16, 24, 32]
    net = MobileNetV3Student((4, 3))
    assert [m.shape[-1] for m in net.stages(torch.zeros(2, 1, 3, 100))] == [25, 13, 7, 7]
    assert any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in net.modules())  # depthwise convs
    assert SmallCNN((4, 3)).stage_channels == [16, 32, 64]


def test_students_are_registered_and_reject_bad_input():
    assert {"mobilenet_v3s", "small_cnn"} <= set(MODELS)
    with pytest.raises(ValueError, match="width"):
        MobileNetV3Student((4, 3), width=0.0)
    with pytest.raises(ValueError, match=r"\(N, 1, 3, L\)"):
        build_model("small_cnn", (4, 3))(torch.zeros(2, 3, 100))
    with pytest.raises(ValueError, match="does not take"):
        build_model("small_cnn", (4, 3), width=1.0)


# ----------------------------------------------------------------------------- logits level


def test_conditional_target_keeps_right_rows_and_corrects_wrong_ones():
    z = torch.tensor([[4.0, 1.0, 0.0],   # argmax 0, label 0: right
                      [3.0, 2.0, 0.0],   # argmax 0, label 1: wrong
                      [0.0, 1.0, 5.0]])  # argmax 2, label 0: wrong  # fmt: skip
    y = torch.tensor([0, 1, 0])
    T = 2.0
    p = F.softmax(z / T, dim=1)
    q = conditional_target(z, y, T)
    torch.testing.assert_close(q[0], p[0])  # right: the teacher's softened distribution
    assert q.argmax(1).tolist() == [0, 1, 0]  # the argmax is always the true class
    # wrong rows: the predicted and the true class swap their probabilities, the rest is untouched
    torch.testing.assert_close(q[1], p[1][[1, 0, 2]])
    torch.testing.assert_close(q[2], p[2][[2, 1, 0]])
    torch.testing.assert_close(q.sum(1), torch.ones(3))
    torch.testing.assert_close(q.sort(dim=1).values, p.sort(dim=1).values)  # same values: same entropy


def test_logits_loss_is_zero_at_the_target_and_scaled_by_t_squared():
    torch.manual_seed(0)
    zt, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    T = 3.0
    q = conditional_target(zt, y, T)
    student_at_target = T * torch.log(q)  # softmax(z / T) == q
    assert float(logits_loss(student_at_target, zt, y, T)) == pytest.approx(0.0, abs=1e-5)
    zs = torch.randn(6, 5)
    by_hand = T**2 * (q * (q.log() - F.log_softmax(zs / T, 1))).sum(1).mean()
    torch.testing.assert_close(logits_loss(zs, zt, y, T), by_hand)
    zs.requires_grad_(True)
    zt.requires_grad_(True)
    logits_loss(zs, zt, y, T).backward()
    assert zt.grad is None and zs.grad.abs().sum() > 0  # the teacher gets no gradient


# ----------------------------------------------------------------------------- stage level


def test_match_length_pools_interpolates_or_keeps():
    t = torch.arange(8.0).reshape(1, 1, 8)
    torch.testing.assert_close(match_length(t, 4), torch.tensor([[[0.5, 2.5, 4.5, 6.5]]]))
    assert match_length(t, 16).shape == (1, 1, 16)
    assert match_length(t, 8) is t


def test_stage_loss_projects_matches_and_normalises():
    torch.manual_seed(0)
    s = torch.randn(4, 8, 13)
    t = torch.randn(4, 16, 46)
    proj = nn.ModuleList([nn.Conv1d(8, 16, 1)])
    loss = stage_loss([s], [t], proj)
    ps, tt = proj[0](s).flatten(1), F.adaptive_avg_pool1d(t, 13).flatten(1)
    by_hand = (2 - 2 * F.cosine_similarity(ps, tt, dim=1)).mean()
    torch.testing.assert_close(loss, by_hand)
    assert 0.0 <= float(loss.detach()) <= 4.0
    # a student map equal to the (matched) teacher map up to scale costs nothing
    same = stage_loss([3.0 * F.adaptive_avg_pool1d(t, 13)], [t], nn.ModuleList([nn.Identity()]))
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="as many"):
        stage_loss([s, s], [t], proj)


def test_stage_pairs_use_the_same_relative_depth():
    assert stage_pairs(4, 2) == [1, 3]
    assert stage_pairs(3, 2) == [1, 2]
    assert stage_pairs(1, 2) == [0, 0]


# ----------------------------------------------------------------------------- memory level


def _identity_layer(d: int, beta: float) -> HopfieldLayer:
    layer = HopfieldLayer(d, d, d, beta=beta)
    with torch.no_grad():
        for w in (layer.w_q, layer.w_k, layer.w_v):
            w.weight.copy_(torch.eye(d))
    return layer


def test_hopfield_layer_with_identity_weights_is_the_closed_form_update():
    torch.manual_seed(0)
    Y, xi, beta = torch.randn(5, 6), torch.randn(3, 6), 0.7
    z, a = _identity_layer(6, beta)(xi, Y)
    # Ramsauer et al. (2020), Eq. (3): xi_new = Y^T softmax(beta Y xi), one column per query
    closed = torch.stack([Y.T @ torch.softmax(beta * Y @ q, dim=0) for q in xi])
    torch.testing.assert_close(z, closed)
    torch.testing.assert_close(a.sum(1), torch.ones(3))
    torch.testing.assert_close(hopfield_update(xi, Y, beta)[0], closed)


def test_hopfield_layer_retrieves_a_stored_pattern_from_a_noisy_query():
    gen = torch.Generator().manual_seed(1)
    Y = torch.sign(torch.randn(8, 64, generator=gen))  # 8 stored binary patterns
    noisy = Y[3].clone()
    noisy[:12] *= -1  # 12 of 64 bits flipped
    z, a = _identity_layer(64, beta=1.0)(noisy[None], Y)
    assert int(a.argmax()) == 3 and float(a[0, 3].detach()) > 0.999
    torch.testing.assert_close(z[0], Y[3], atol=1e-3, rtol=0)


def test_hopfield_mask_excludes_patterns_and_beta_defaults():
    layer = HopfieldLayer(4, 16, 2)
    assert layer.beta == pytest.approx(0.25)
    x = torch.randn(3, 4)
    _, a = layer(x, mask=torch.eye(3, dtype=torch.bool))
    assert torch.all(a.diagonal() == 0) and torch.allclose(a.sum(1), torch.ones(3))


def test_memory_loss_zero_when_the_student_reproduces_the_teacher_association():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(6, 5), dim=1)
    beta = 4.0
    layer = _identity_layer(5, beta)
    assert float(memory_loss(t, t, layer, teacher_beta=beta).detach()) == pytest.approx(0.0, abs=1e-6)
    other = memory_loss(torch.randn(6, 5), t, layer, teacher_beta=beta)
    assert float(other.detach()) > 0.01
    with pytest.raises(ValueError, match="at least 2"):
        memory_loss(t[:1], t[:1], layer)


# ----------------------------------------------------------------------------- training


def _toy(n=96, length=32, seed=0):
    """Three separable classes (a class-dependent mean of axis 0) and two placements (mean of axis 1)."""
    g = np.random.default_rng(seed)
    y1 = g.integers(0, 3, n)
    y2 = g.integers(0, 2, n)
    X = 0.5 * g.standard_normal((n, 1, 3, length)).astype(np.float32)
    X[:, 0, 0] += 2.0 * (y1[:, None] - 1)
    X[:, 0, 1] += 2.0 * y2[:, None]
    return X.astype(np.float32), y1, y2


@pytest.fixture(scope="module")
def toy_teacher():
    X, y1, y2 = _toy()
    torch.manual_seed(0)
    teacher = build_model("mtlnet_corrected", (3, 2), window_length=32)
    return teacher.eval().requires_grad_(False), (X, y1, y2)


def test_fit_student_selects_on_validation_and_is_seeded(toy_teacher):
    teacher, (X, y1, y2) = toy_teacher
    fit, val, test = np.arange(0, 64), np.arange(64, 80), np.arange(80, 96)
    cfg = SMLDistConfig(student="small_cnn", student_options={"channels": (8, 16)}, levels=("logits", "stage", "memory"),
                        epochs=3, batch_size=16)
    a = fit_student(X, y1, y2, fit, val, test, cfg, teacher, (3, 2))
    b = fit_student(X, y1, y2, fit, val, test, cfg, teacher, (3, 2))
    assert list(a.history["epoch"]) == [1, 2, 3]
    assert a.best_epoch == int(a.history["val_acc_mean"].idxmax()) + 1
    assert a.history.equals(b.history)  # same seed, same numbers
    assert all(a.history[f"train_{k}"].gt(0).all() for k in ("ce", "logits", "stage", "memory"))
    assert set(a.metrics) == {("val", 1), ("val", 2), ("test", 1), ("test", 2)}
    assert a.n_params == count_parameters(build_model("small_cnn", (3, 2), channels=(8, 16)))
    # the stored weights are the selected epoch's: re-scoring them reproduces its validation accuracy
    net = build_model("small_cnn", (3, 2), channels=(8, 16))
    net.load_state_dict(a.state_dict)
    z1 = smldist.predict(net, X[val])[0]
    acc = 100 * np.mean(z1.argmax(1) == y1[val])
    assert acc == pytest.approx(a.history.loc[a.best_epoch - 1, "val_acc_task1"])


def test_fit_student_without_levels_needs_no_teacher_and_learns(toy_teacher):
    _, (X, y1, y2) = toy_teacher
    fit, val, test = np.arange(0, 64), np.arange(64, 80), np.arange(80, 96)
    cfg = SMLDistConfig(student="small_cnn", student_options={"channels": (8, 16)}, epochs=8, batch_size=16, lr=5e-3)
    res = fit_student(X, y1, y2, fit, val, test, cfg)
    assert res.history["train_logits"].eq(0).all()  # level off: no term
    assert res.metrics[("val", 1)]["accuracy"] > 60  # chance is 33 %


def test_fit_student_errors():
    with pytest.raises(ValueError, match="levels"):
        SMLDistConfig(levels=("logit",))
    with pytest.raises(ValueError, match="lam_stage"):
        SMLDistConfig(lam_stage=float("nan"))
    X, y1, y2 = _toy(n=32)
    with pytest.raises(ValueError, match="need a teacher"):
        fit_student(X, y1, y2, np.arange(16), np.arange(16, 24), np.arange(24, 32),
                    SMLDistConfig(student="small_cnn", levels=("logits",), epochs=1))
    X[3] = np.inf
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit_student(X, y1, y2, np.arange(16), np.arange(16, 24), np.arange(24, 32),
                    SMLDistConfig(student="small_cnn", epochs=1, batch_size=8))


def test_teacher_targets_match_the_paired_student_stages(toy_teacher):
    teacher, (X, _, _) = toy_teacher
    student = build_model("mobilenet_v3s", (3, 2), width=0.5)
    tg = smldist.teacher_targets(teacher, torch.as_tensor(X[:10]), student)
    lengths = [m.shape[-1] for m in student.stages(torch.as_tensor(X[:2]))]
    assert tg["pairs"] == [1, 3]
    assert [t.shape for t in tg["stages"]] == [(10, 32 * 3, lengths[1]), (10, 64 * 3, lengths[3])]
    assert tg["features"].shape == (10, 512) and tg["logits"][0].shape == (10, 3)
    torch.testing.assert_close(tg["logits"][0], teacher(torch.as_tensor(X[:10]))[0])
    with pytest.raises(ValueError, match="no conv stages"):
        smldist.teacher_stage_modules(build_model("lstm", (3, 2)))


# ----------------------------------------------------------------------------- ablation records


def test_shipped_config_loads_and_sizes_demo_small():
    abl = smldist.load_ablation(ROOT / "configs" / "smldist.yaml")
    demo = abl.for_mode("demo")
    assert demo.protocols == ["paper"] and demo.datasets == ["sleepsim", "wisdm"]
    assert [(s, c) for s, c, _ in demo.jobs()] == [("mobilenet_v3s", c) for c in smldist.COMBINATIONS] + [
        ("small_cnn", "none"), ("small_cnn", "logits"), ("small_cnn", "all")]  # logits only: plain KD, the baseline
    assert demo.seeds is None  # the mode's three seeds
    full = abl.for_mode("full")
    assert full.protocols == ["paper", "subject"] and len(full.jobs()) == 10


def test_load_ablation_and_run_ablation_write_resumable_records(tmp_path, monkeypatch):
    cfg = tmp_path / "abl.yaml"
    cfg.write_text("name: tiny\ndatasets: [sleepsim]\nprotocols: [paper]\nseeds: [0]\nexport: true\n"
                   "students:\n  cnn: {student: small_cnn, student_options: {channels: [8, 16]}}\n"
                   "combinations: [none, all]\nconfig: {epochs: 1}\n"
                   "modes:\n  demo: {combinations: [none]}\n")  # fmt: skip
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(tmp_path / "data"))  # sleepsim is simulated: no files needed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(smldist, "project_root", lambda: tmp_path)  # teacher checkpoints go to tmp
    abl = smldist.load_ablation(cfg)
    assert abl.for_mode("demo").combinations == ["none"] and abl.for_mode("quick").combinations == ["none", "all"]
    recs = smldist.run_ablation(cfg, mode="quick", results=tmp_path / "results", progress=False)
    files = sorted((tmp_path / "results" / "tiny" / "runs").glob("*.json"))
    assert len(recs) == len(files) == 3  # teacher + 2 combinations
    rec = json.loads(files[0].read_text())
    assert {"schema", "run_id", "spec", "params", "metrics", "provenance"} <= set(rec)
    assert rec["provenance"]["mode"] == "quick" and files[0].stem == rec["run_id"]
    dep = {r["spec"]["student"] + "/" + r["spec"].get("combination", "-"): r["deployment"] for r in recs}
    assert [row["precision"] for row in dep["cnn/all"]] == ["fp32", "int8"]
    assert dep["cnn/all"][0]["max_abs_diff"] <= 1e-4
    assert dep["teacher/-"][0]["params"] == recs[0]["params"] > 1_000_000
    table = smldist.ablation_table(recs)
    assert list(table.index.get_level_values("levels")) == ["-", "none", "all"]
    before = {f: f.stat().st_mtime_ns for f in files}
    again = smldist.run_ablation(cfg, mode="quick", results=tmp_path / "results", progress=False)
    assert len(again) == 3 and {f: f.stat().st_mtime_ns for f in files} == before  # nothing rerun
    bad = tmp_path / "bad.yaml"
    bad.write_text("students:\n  s: {student: small_cnn, combinations: [logits+hopfield]}\n")
    with pytest.raises(ValueError, match="unknown combination"):
        smldist.load_ablation(bad)


# ----------------------------------------------------------------------------- deployment read from records
def _dep_record(dataset, student, combo, seed, val, test32, test8, fp32_only, int8_only, n=800):
    return {"spec": {"dataset": dataset, "protocol": "paper", "student": student, "combination": combo, "seed": seed},
            "metrics": {"val_task1": {"accuracy": val}},
            "deployment": [{"precision": "fp32", "acc_task1": test32, "file_bytes": 200_000},
                           {"precision": "int8", "acc_task1": test8, "file_bytes": 60_000,
                            "vs_fp32": {"task1": {"n": n, "fp32_only": fp32_only, "int8_only": int8_only}}}]}


def test_int8_change_pools_the_discordant_windows_of_every_seed():
    recs = [_dep_record("wisdm", "small_cnn", "none", s, 50, 50, 49, 10, 4) for s in range(3)]
    t = smldist.int8_change(recs)
    row = t.loc[("wisdm", "paper", "small_cnn (none)")]
    assert (row["seeds"], row["windows"], row["fp32 only"], row["int8 only"]) == (3, 2400, 30, 12)
    # (12 - 30) / 2400 = -0.75 points; Wald variance (42 - 18^2/2400) / 2400^2; McNemar exact on 12 of 42
    se = np.sqrt(42 - 324 / 2400) / 2400
    assert row["change"] == pytest.approx(-0.75)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((100 * (-18 / 2400 - 1.959964 * se), 100 * (-18 / 2400 + 1.959964 * se)))
    assert row["p (McNemar)"] == pytest.approx(st.binomtest(12, 42).pvalue)
    old = {**recs[0], "deployment": [{**d, "vs_fp32": None} for d in recs[0]["deployment"]]}
    assert smldist.int8_change([old]).empty  # records without the counts are left out


def test_the_deployed_student_is_chosen_on_validation_not_test():
    recs = [_dep_record("wisdm", "mobilenet_v3s", "all", s, 60 + s, 40, 40, 0, 0) for s in range(3)]
    recs += [_dep_record("wisdm", "small_cnn", "none", s, 55, 70, 69, 0, 0) for s in range(3)]  # best on test only
    recs.append({"spec": {"dataset": "wisdm", "protocol": "paper", "student": "teacher"},
                 "metrics": {"val_task1": {"accuracy": 99.0}}, "deployment": []})
    pick = smldist.chosen_on_validation(recs).loc[("wisdm", "paper")]
    assert pick["model"] == "mobilenet_v3s (all)" and pick["seeds"] == 3 and pick["val acc"] == pytest.approx(61.0)
    assert pick["test acc int8"] == 40 and pick["kB int8"] == 60


def test_read_records_reads_a_modes_committed_records_without_data(tmp_path):
    abl = smldist.Ablation(name="abl", datasets=["wisdm"], protocols=["paper"])
    runs = tmp_path / "abl" / "runs"
    runs.mkdir(parents=True)
    for i, (mode, ds, seed) in enumerate([("demo", "wisdm", 1), ("demo", "wisdm", 0), ("quick", "wisdm", 0),
                                          ("demo", "sleepsim", 0)]):
        spec = {"dataset": ds, "protocol": "paper", "mode": {"name": mode}, "student": "small_cnn",
                "combination": "none", "config": {"seed": seed}}
        (runs / f"r{i}.json").write_text(json.dumps({"run_id": f"r{i}", "spec": spec}))
    got = smldist.read_records(abl, "demo", results=tmp_path)
    assert [(r["run_id"], r["spec"]["config"]["seed"]) for r in got] == [("r1", 0), ("r0", 1)]
    assert smldist.read_records(abl, "full", results=tmp_path) == []
