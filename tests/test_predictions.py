"""Per-window predictions beside each record: written by the runner, read back checked by sha256."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothdistill_lib import experiment, predictions, records, runner
from smoothdistill_lib.predictions import PredictionsError


def engine_predictions(n_test=7, n_val=5, teacher=True, seed=0):
    """An engine ``FitResult.predictions`` dict as ``engine.fit`` returns it (probabilities included)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("test", n_test), ("val", n_val)):
        index = np.sort(rng.choice(100, n, replace=False))
        y1, y2 = rng.integers(0, 6, n), rng.integers(0, 3, n)
        for who in ("student", "teacher") if teacher else ("student",):
            out[(split, who)] = {"index": index, "y1_true": y1, "y2_true": y2,
                                 "y1_pred": rng.integers(0, 6, n), "y2_pred": rng.integers(0, 3, n),
                                 "y1_prob": rng.random((n, 6)), "y2_prob": rng.random((n, 3))}
    return out


def test_arrays_are_compact_labels_of_every_network_and_round_trip(tmp_path):
    p = engine_predictions()
    arrays = predictions.arrays_from(p)
    assert set(arrays) == {"test_index", "val_index", "test_y1_true", "test_y2_true", "val_y1_true", "val_y2_true",
                           *(f"{s}_{w}_y{t}_pred" for s in ("test", "val") for w in ("student", "teacher")
                             for t in (1, 2))}
    assert arrays["test_y1_true"].dtype == np.uint8 and arrays["test_index"].dtype == np.int32
    ref = predictions.write(tmp_path, "abc123", arrays)
    assert ref["file"] == "abc123.pred.npz" and ref["arrays"]["test_index"] == 7
    back = predictions.read(tmp_path, {"run_id": "abc123", "predictions": ref})
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
    # ordered by window index; each label stays with its window
    order = np.argsort(p[("test", "teacher")]["index"])
    np.testing.assert_array_equal(back["test_index"], p[("test", "teacher")]["index"][order])
    assert np.all(np.diff(back["val_index"]) > 0)
    right = predictions.correct(back, "test", "teacher", 2)
    np.testing.assert_array_equal(right, (p[("test", "teacher")]["y2_pred"] == p[("test", "teacher")]["y2_true"])[order])
    with pytest.raises(KeyError, match="test_teacher_y1_pred"):
        predictions.correct(predictions.arrays_from(engine_predictions(teacher=False)), "test", "teacher", 1)


def test_the_same_predictions_always_have_the_same_sha256(tmp_path):
    arrays = predictions.arrays_from(engine_predictions())
    a = predictions.write(tmp_path / "a", "r", arrays)
    b = predictions.write(tmp_path / "b", "r", arrays)
    assert a["sha256"] == b["sha256"]
    other = predictions.write(tmp_path / "c", "r", predictions.arrays_from(engine_predictions(seed=1)))
    assert other["sha256"] != a["sha256"]


def test_many_classes_are_stored_in_sixteen_bits():
    p = engine_predictions()
    p[("test", "student")]["y1_pred"] = np.full(7, 300)
    p[("test", "teacher")]["y1_pred"] = np.full(7, 300)
    arrays = predictions.arrays_from(p)
    assert arrays["test_student_y1_pred"].dtype == np.uint16 and int(arrays["test_student_y1_pred"][0]) == 300


@pytest.mark.parametrize("damage, message", [
    ("edit", "sha256"), ("delete", "missing"), ("no_ref", "holds no per-window predictions"),
    ("path", "plain file name"), ("arrays", "do not match"),
])
def test_a_damaged_or_missing_predictions_file_is_refused_in_one_line(tmp_path, damage, message):
    ref = predictions.write(tmp_path, "r1", predictions.arrays_from(engine_predictions()))
    rec = {"run_id": "r1", "predictions": ref}
    path = tmp_path / ref["file"]
    if damage == "edit":
        path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    elif damage == "delete":
        path.unlink()
    elif damage == "no_ref":
        rec.pop("predictions")
    elif damage == "path":
        rec["predictions"] = {**ref, "file": "../r1.pred.npz"}
    else:
        rec["predictions"] = {**ref, "arrays": {**ref["arrays"], "test_index": 99}}
    with pytest.raises(PredictionsError, match=message) as e:
        predictions.read(tmp_path, rec)
    assert "\n" not in str(e.value)


def test_validate_record_refuses_a_malformed_predictions_reference(tmp_path):
    exp = experiment.Experiment.from_dict({"name": "v", "datasets": ["sleepsim"], "methods": ["multitask"],
                                           "mode": "quick"})
    spec = experiment.expand(exp)[0]
    rec = {"schema": records.SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), "config": {}, "data": {},
           "best_epoch": 1, "evaluation": [{"split": "test", "who": "student", "task": 1, "metrics": {"accuracy": 1.0}}],
           "history": [], "compute": {}, "provenance": {}, "predictions": {"file": 3}}
    with pytest.raises(ValueError, match="'predictions' must name a file and its sha256"):
        records.validate_record(rec)


@pytest.fixture(scope="module")
def quick_grid(tmp_path_factory):
    """A real quick grid (sleepsim, Smooth-Distill lambda 0.5 and multitask, one seed)."""
    root = tmp_path_factory.mktemp("pred")
    exp = experiment.Experiment.from_dict({"name": "p", "datasets": ["sleepsim"], "methods": ["smooth_distill", "multitask"],
                                           "lams": [0.5], "seeds": [0], "folds": [0], "epochs": 1, "mode": "quick"})
    runner.run_experiment(exp, results_root=root, progress=False)
    return root, exp


def test_the_runner_writes_predictions_that_reproduce_the_records_evaluation(quick_grid):
    root, exp = quick_grid
    recs = records.load_experiment("p", results_root=root)
    assert {s.run_id for s in experiment.expand(exp)} == set(recs.records)  # run ids as before
    for rid, rec in recs.records.items():
        arrays = recs.predictions(rid)
        assert (root / "p" / "runs" / rec["predictions"]["file"]).is_file()
        for e in rec["evaluation"]:
            right = predictions.correct(arrays, e["split"], e["who"], e["task"])
            assert len(right) == e["metrics"]["n"]
            assert 100 * right.mean() == pytest.approx(e["metrics"]["accuracy"], abs=1e-9)
        whos = {e["who"] for e in rec["evaluation"]}
        assert ("test_teacher_y1_pred" in arrays) == ("teacher" in whos)
        assert recs.has_predictions(rid)
        # the JSON holds the reference only, never the arrays
        text = json.dumps(rec)
        assert "test_index" in text and len(text) < 200_000


def test_a_stale_record_takes_its_predictions_with_it(quick_grid, tmp_path):
    root, exp = quick_grid
    import shutil
    shutil.copytree(root / "p", tmp_path / "p")
    changed = experiment.Experiment.from_dict({**exp.to_dict(), "epochs": 2})
    runner.run_experiment(changed, results_root=tmp_path, limit=0, progress=False)
    stale = sorted(p.name for p in (tmp_path / "p" / "stale").iterdir())
    assert any(n.endswith(".pred.npz") for n in stale) and any(n.endswith(".json") for n in stale)
    assert not list((tmp_path / "p" / "runs").glob("*.pred.npz"))


# ----------------------------------------------------------------------------- backfill
def _strip_predictions(folder):
    """Make the records look like those made before predictions were kept."""
    for path in folder.glob("*.json"):
        rec = json.loads(path.read_text())
        (folder / rec.pop("predictions")["file"]).unlink()
        path.write_text(json.dumps(rec, indent=1))


def test_backfill_reruns_old_records_and_adds_predictions_only_where_they_reproduce(quick_grid, tmp_path, capsys):
    import shutil

    root, exp = quick_grid
    shutil.copytree(root / "p", tmp_path / "p")
    runs = tmp_path / "p" / "runs"
    before = {p.name: json.loads(p.read_text()) for p in runs.glob("*.json")}
    _strip_predictions(runs)
    # one record edited after the fact: its re-run cannot reproduce it
    victim = sorted(before)[0]
    rec = json.loads((runs / victim).read_text())
    rec["evaluation"][0]["metrics"]["accuracy"] += 0.5
    (runs / victim).write_text(json.dumps(rec, indent=1))
    s = runner.backfill_predictions(exp, results_root=tmp_path, progress=False)  # same process, same threads
    assert len(s.added) == len(before) - 1 and len(s.differed) == 1
    assert s.differed[0].startswith(victim[:-5]) and "1 of" in s.differed[0] and "evaluation[0].metrics.accuracy" in s.differed[0]
    after = records.load_experiment("p", results_root=tmp_path)
    for name, old in before.items():
        rid = name[:-5]
        if name == victim:
            assert "predictions" not in after.records[rid]  # left as it was
            continue
        new = after.records[rid]
        assert new["predictions"]["sha256"] == old["predictions"]["sha256"]  # the very same predictions
        assert new["provenance"]["predictions_backfill"]["values_reproduced"] > 100
        assert {k: v for k, v in new.items() if k not in ("predictions", "provenance")} == \
               {k: v for k, v in old.items() if k not in ("predictions", "provenance")}
    # filters: a dataset with no records re-runs nothing
    none = runner.backfill_predictions(exp, results_root=tmp_path, progress=False, run_fn=lambda *a: 1 / 0,
                                       datasets=["wisdm"])
    assert none.added == [] and none.had == 0
    # nothing left to do: a second backfill re-runs nothing
    again = runner.backfill_predictions(exp, results_root=tmp_path, progress=False, run_fn=lambda *a: 1 / 0,
                                        methods=["multitask", "smooth_distill"], limit=0)
    assert again.added == [] and again.had == len(before) - 1
    capsys.readouterr()


def test_backfill_cli_exits_1_when_a_record_does_not_reproduce(quick_grid, tmp_path, monkeypatch, capsys):
    import shutil

    from smoothdistill_lib.cli import main as cli_main
    root, exp = quick_grid
    shutil.copytree(root / "p", tmp_path / "p")
    _strip_predictions(tmp_path / "p" / "runs")
    config = tmp_path / "p.yaml"
    experiment.write_config(exp, config)
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path))

    real = runner.run_one

    def shifted(spec, device=None, progress=True):  # a "re-run" whose numbers differ
        body = real(spec, device, progress=False)
        body["best_epoch"] += 1
        return body

    monkeypatch.setattr(runner, "run_one", shifted)
    assert cli_main(["backfill", str(config), "--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert "NOT reproduced, record left as it was" in out and "best_epoch" in out and "1 still without" in out


def test_reproduction_ignores_timings_the_device_name_and_options_added_later_while_off():
    rec = {"config": {"epochs": 2, "device": None}, "data": {"n_test": 5}, "best_epoch": 1, "best_epochs": {},
           "evaluation": [{"metrics": {"accuracy": 50.0}}], "history": [{"epoch": 1, "val_acc_task1": 40.0, "epoch_seconds": 3.0}]}
    body = {**rec, "config": {"epochs": 2, "device": "cpu", "precision": "fp32"},
            "history": [{"epoch": 1, "val_acc_task1": 40.0, "epoch_seconds": 9.0}]}
    n, diff = runner.reproduction_diff(rec, body)
    assert diff == [] and n == 6
    body["config"]["precision"] = "bf16"
    body["history"][0]["val_acc_task1"] = 40.000000001
    assert runner.reproduction_diff(rec, body)[1] == ["config.precision", "history[0].val_acc_task1"]


# every record of these grids keeps its predictions (True), or those kept so far reproduce (False: for a
# grid whose records older than predictions are being backfilled, `python -m smoothdistill_lib backfill`;
# the long grid's 60 were, from its clean commit, each re-run reproducing its record to the last digit)
COMMITTED = {"long_cv": True, "long": True, "long_lambda": True, "long_ratio": True, "long_arch": True}


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_predictions_match_their_records(name):
    """results/<name>: each record that names a predictions file has one whose sha256 matches and whose
    accuracies (student and teacher, both tasks, test and validation) reproduce the record's evaluation:
    the bootstrap and the chapters read them."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    recs = records.load_experiment(name, results_root=root / "results")
    if recs is None and name in ("long_ratio", "long_arch"):  # grids still being made
        pytest.skip(f"results/{name} has no records yet (python -m smoothdistill_lib run configs/{name}.yaml)")
    assert recs is not None
    plan = {s.run_id for s in experiment.expand(experiment.read_config(root / "configs" / f"{name}.yaml"))}
    assert set(recs.records) <= plan
    kept = [rid for rid in recs.records if recs.has_predictions(rid)]
    assert kept and (not COMMITTED[name] or len(kept) == len(recs.records)), (len(kept), len(recs.records))
    for rid in kept:
        arrays, rec = recs.predictions(rid), recs.records[rid]
        for e in rec["evaluation"]:
            right = predictions.correct(arrays, e["split"], e["who"], e["task"])
            assert 100 * right.mean() == pytest.approx(e["metrics"]["accuracy"]), (rid, e["split"], e["who"], e["task"])
