"""The command line as a user meets it: every expected failure is ONE ``error: ...`` line on stderr
and a non-zero exit, never a traceback (unless ``--debug``); warnings are one ``warning: ...`` line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from smoothdistill_lib import cli
from smoothdistill_lib import download as dl
from smoothdistill_lib.errors import IncompleteDataWarning, UserError
from tests.rawfixtures import write_wisdm_tree

ROOT = Path(__file__).resolve().parent.parent


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def _run_module(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m smoothdistill_lib ARGS`` in a fresh interpreter, importing this checkout's library."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "smoothdistill_lib", *args], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=300)


# ---------------------------------------------------------------------------- a real interpreter


@pytest.mark.parametrize(
    "args, names",
    [
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--epochs", "0"], ["--epochs", ">= 1", "got 0"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--epochs", "-2"], ["--epochs", "got -2"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--epochs", "two"], ["--epochs", "'two'"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--device", "nosuch"],
         ["--device", "'nosuch'", "'cpu'"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--mode", "huge"], ["--mode", "'huge'"]),
        (["nosuch"], ["'nosuch'"]),
    ],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit(args, names, tmp_path):
    r = _run_module(*args, env={"SMOOTHDISTILL_RESULTS": str(tmp_path)})
    line = _one_error_line(r.stderr)
    assert r.returncode == 2 and r.stdout == ""
    for name in names:
        assert name in line, line


def test_debug_shows_the_traceback():
    env = {"SMOOTHDISTILL_MODE": "huge"}  # `datasets` reports the mode's sleepsim size: a ValueError
    r = _run_module("datasets", env=env)
    assert r.returncode == 2 and _one_error_line(r.stderr).startswith("error: unknown run mode 'huge'")
    for args in (["--debug", "datasets"], ["datasets", "--debug"]):  # before or after the subcommand
        r = _run_module(*args, env=env)
        assert r.returncode == 1 and "Traceback" in r.stderr and "unknown run mode 'huge'" in r.stderr


@pytest.mark.parametrize(
    "args, names",
    [
        (["run", "configs/main.yaml", "--device", "nosuch"], ["--device", "'nosuch'"]),
        (["run", "configs/main.yaml", "--limit", "-1"], ["--limit", "got -1"]),
        (["report", "no_such_experiment"], ["no_such_experiment"]),
        (["run", "no/such.yaml"], ["no/such.yaml", "not found"]),
    ],
)
def test_run_and_report_arguments_in_process(args, names, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert cli.main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    for name in names:
        assert name in line, line


def test_a_broken_yaml_config_is_one_line_with_its_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path))
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("name: broken\ndatasets: [sleepsim\nprotocols: [paper]\n")
    assert cli.main(["run", str(cfg)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(cfg) in line and "line 3, column 10" in line


# ---------------------------------------------------------------------------- cli.main in-process


def _yaml_error() -> yaml.YAMLError:
    try:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    except yaml.YAMLError as e:
        return e
    raise AssertionError("valid YAML")


def _caused_by_yaml() -> ValueError:
    e = ValueError("configs/x.yaml: not valid YAML/JSON: while parsing a flow sequence\n  in ...\n    ^")
    e.__cause__ = _yaml_error()
    return e


_RAISE: list[BaseException] = []


def _raiser(args):
    """A stand-in subcommand handler: raises what the test put in ``_RAISE``, or warns then returns 0."""
    if _RAISE:
        raise _RAISE[0]
    warnings.warn("WISDM folder /x is incomplete: it holds 1 of 51 phone accel files", IncompleteDataWarning,
                  stacklevel=2)
    return 0


@pytest.fixture
def fake_handler(monkeypatch):
    monkeypatch.setitem(cli.HANDLERS, "datasets", (__name__, "_raiser"))
    _RAISE.clear()
    yield _RAISE
    _RAISE.clear()


@pytest.mark.parametrize(
    "exc, expected",
    [
        (UserError("experiment main: another `run` holds results/main/.lock (pid 7); wait for it"),
         "error: experiment main: another `run` holds results/main/.lock (pid 7); wait for it"),
        (ValueError("results/main/runs/x.json: record lacks keys ['metrics']"),
         "error: results/main/runs/x.json: record lacks keys ['metrics']"),
        (FileNotFoundError(2, "No such file or directory", "data/x.log"),
         "error: [Errno 2] No such file or directory: 'data/x.log'"),
        (PermissionError(13, "Permission denied", "/data/wisdm-dataset/raw/phone/accel/data_1600_accel_phone.txt"),
         "error: [Errno 13] Permission denied: '/data/wisdm-dataset/raw/phone/accel/data_1600_accel_phone.txt'"),
        (OSError(28, "No space left on device"), "error: [Errno 28] No space left on device"),
        (FloatingPointError("smooth_distill, epoch 3: the training loss is nan"),
         "error: smooth_distill, epoch 3: the training loss is nan"),
        (pickle.UnpicklingError("Weights only load failed: x.pt holds a GLOBAL os.system"),
         "error: Weights only load failed: x.pt holds a GLOBAL os.system"),
        (dl.DownloadError("x.zip is damaged\nsecond line"), "error: x.zip is damaged; second line"),
        (_yaml_error(), "error: line 2, column 2: expected ',' or ']', but got ':'"),
        (_caused_by_yaml(), "error: configs/x.yaml: not valid YAML/JSON: while parsing a flow sequence "
                            "(line 2, column 2: expected ',' or ']', but got ':')"),
    ],
)
def test_every_expected_failure_is_one_line(fake_handler, capsys, exc, expected):
    fake_handler.append(exc)
    assert cli.main(["datasets"]) == 2
    out, err = capsys.readouterr()
    assert _one_error_line(err) == expected and out == ""
    with pytest.raises(type(exc)):  # --debug: the exception itself, so its traceback prints
        cli.main(["--debug", "datasets"])


def test_a_bug_keeps_its_traceback_and_an_interrupt_is_one_line(fake_handler, capsys):
    fake_handler.append(KeyError("metrics"))  # not an expected failure: a bug to be seen
    with pytest.raises(KeyError):
        cli.main(["datasets"])
    fake_handler[0] = KeyboardInterrupt()
    assert cli.main(["datasets"]) == 130
    assert _one_error_line(capsys.readouterr().err) == "error: interrupted"


def test_warnings_print_as_one_line(fake_handler, capsys):
    assert cli.main(["datasets"]) == 0
    err = capsys.readouterr().err
    assert err == ("warning: WISDM folder /x is incomplete: it holds 1 of 51 phone accel files "
                   "[IncompleteDataWarning]\n")


def test_train_checks_its_options_before_preparing_data(monkeypatch):
    """cli_train called with a hand-made Namespace (argparse bypassed) still names the option."""
    import argparse

    from smoothdistill_lib import engine, pipeline

    monkeypatch.setattr(pipeline, "prepare", lambda *a, **k: pytest.fail("data prepared before the check"))
    base = dict(dataset="sleepsim", method="multitask", model="mtlnet", mode="quick", seed=0, epochs=None,
                protocol="paper", fold=0, lam=None, device=None)
    for change, name in [({"epochs": 0}, "--epochs"), ({"epochs": -1}, "--epochs"), ({"epochs": 2.5}, "--epochs"),
                         ({"lam": float("nan")}, "--lam"), ({"lam": -0.5}, "--lam"), ({"device": "nosuch"}, "--device"),
                         ({"seed": -5}, "--seed"), ({"seed": 2**64}, "--seed")]:
        with pytest.raises(ValueError, match=name):
            engine.cli_train(argparse.Namespace(**{**base, **change}))


@pytest.mark.parametrize(
    "args, names",
    [
        # scikit-learn said "expected non-negative integer", torch "Overflow when unpacking long long"
        (["windows", "--dataset", "sleepsim", "--seed", "-5"], ["--seed", "-5 is not a whole number from 0 to 4294967295"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--seed", "99999999999999999999"],
         ["--seed", "99999999999999999999 is not a whole number from 0 to 4294967295"]),
        (["train", "--dataset", "sleepsim", "--method", "multitask", "--seed", "x"], ["--seed", "'x' is not a whole number"]),
        (["score", "results/x/runs/abc", "--subjects", "3,a"], ["--subjects", "'3,a'"]),
        (["score", "results/x/runs/abc"], ["--subjects"]),
    ],
)
def test_bad_seeds_and_subjects_name_the_option(args, names, capsys):
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    line = _one_error_line(err)
    assert out == "" and all(n in line for n in names), line


def test_seeds_outside_every_librarys_range_are_refused_where_they_enter():
    from smoothdistill_lib.engine import TrainConfig

    for bad in (-1, 2**32, 2.0, True):
        with pytest.raises(ValueError, match="TrainConfig.seed must be a whole number from 0 to 4294967295"):
            TrainConfig(method="multitask", epochs=1, seed=bad)
    assert TrainConfig(method="multitask", epochs=1, seed=2**32 - 1).seed == 2**32 - 1


def test_score_of_something_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    assert cli.main(["score", str(tmp_path / "nothing"), "--subjects", "1"]) == 2
    assert "nothing.pt not found" in _one_error_line(capsys.readouterr().err)


def test_resolve_device_refuses_unparsable_names():
    from smoothdistill_lib.engine import resolve_device

    for bad in ("nosuch", "cuda:x", ""):
        with pytest.raises(ValueError, match=f"device={bad!r} is not a device name"):
            resolve_device(bad)
    assert resolve_device("cpu").type == "cpu"


# ---------------------------------------------------------------------------- data errors, end to end



def test_a_value_that_overflows_float32_is_one_line_naming_file_and_line(data, capsys):
    write_wisdm_tree(data, {s: ("phone", "watch") for s in (1700, 1701, 1702)})
    path = data / "wisdm-dataset" / "raw" / "watch" / "accel" / "data_1701_accel_watch.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = "1701,A,252207666810782,0.5,1.00e+39,0.5;\n"
    path.write_text("".join(lines))
    assert cli.main(["windows", "--dataset", "wisdm", "--mode", "quick"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(path) in line and "line 7" in line and "float32" in line


def test_missing_data_offline_is_one_line(data, capsys):
    assert cli.main(["windows", "--dataset", "mhealth", "--mode", "quick"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "could not download" in line and dl.MHEALTH_URL in line


@pytest.mark.parametrize("options, key", [("{length: 2.5}", "'data_options.length': 2.5 is not a whole number"),
                                          ("{step: 0}", "'data_options.step': 0 is not a whole number from 1 to"),
                                          ("{step: 1000000000000}", "'data_options.step': 1000000000000 is not")])
def test_a_bad_window_option_is_one_line_naming_file_and_key(tmp_path, monkeypatch, capsys, options, key):
    cfg = tmp_path / "win.yaml"
    cfg.write_text(f"name: win\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {options}\n")
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "results"))
    assert cli.main(["run", str(cfg), "--mode", "quick"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {cfg}: key ") and key in line
    assert not (tmp_path / "results").exists()


def test_a_typo_in_data_options_is_one_line_naming_the_option(tmp_path, monkeypatch, capsys):
    """A key the dataset's loader does not take fails before any record is written, naming it."""
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("name: typo\ndatasets: [sleepsim]\nmethods: [multitask]\ndata_options: {seedd: 3}\n")
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "results"))
    assert cli.main(["run", str(cfg), "--mode", "quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: dataset 'sleepsim': its loader takes no option 'seedd' (from data_options or a load option); check the spelling"
    assert "Traceback" not in "\n".join(err)
    assert list((tmp_path / "results" / "typo" / "runs").glob("*.json")) == []
