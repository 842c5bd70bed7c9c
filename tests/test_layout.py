"""The library's shape: imports follow the data flow one way (CONTRIBUTING.md, "Modules")."""

from __future__ import annotations

import ast
from pathlib import Path

import smoothdistill_lib

#: the data flow, first to last: a module may import only modules listed before it
ORDER = ["config", "errors", "fileio", "recordings", "wisdm", "mhealth", "sleep", "sleepsim", "download",
         "datasets", "firstuse", "windows", "splits", "pipeline", "models", "students", "losses", "ema", "amp", "methods",
         "metrics", "stats", "provenance", "compute", "engine", "checkpoints", "experiment", "predictions", "records", "stack", "shards",
         "runner", "export", "smldist",
         "prose", "report", "analyses", "verdicts", "plots", "exercises", "colab", "nb", "course", "grading", "cli",
         "__main__"]
PACKAGE = Path(smoothdistill_lib.__file__).parent


def _imports(path: Path) -> set[str]:
    """Library modules imported anywhere in ``path`` (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smoothdistill_lib"):
            if node.module == "smoothdistill_lib":
                out |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            else:
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("smoothdistill_lib.")}
    return out


def test_every_module_has_a_place_in_the_data_flow():
    assert sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__") == sorted(ORDER)


def test_imports_go_one_way_along_the_data_flow():
    backwards = [f"{p.stem} imports {m}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"
                 for m in _imports(p) if ORDER.index(m) >= ORDER.index(p.stem)]
    assert backwards == []
