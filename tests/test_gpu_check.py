"""tools/gpu_check.py's replica-stacking check, dry-run on the CPU (CI never needs a GPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stack_check_compares_every_test_accuracy_of_stacked_and_unstacked_runs(tmp_path):
    tool = _tool()
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    summary = tool.stack_check(sys.executable, tmp_path, "cpu", env)
    # 2 seeds x (student, teacher) x 2 tasks, each recorded once unstacked and once stacked
    assert summary["compared"] == 8 and summary["max_abs_diff_points"] is not None
    assert all(set(v) == {"--stack", "--no-stack"} for v in summary["values"].values())
    assert json.loads((tmp_path / "stack_check.json").read_text())["compared"] == 8
    assert "stack check on cpu: 8 test accuracies compared" in (tmp_path / "SUMMARY.txt").read_text()
