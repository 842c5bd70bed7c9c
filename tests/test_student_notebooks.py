"""A student opens a student notebook and runs it from top to bottom, before answering anything.

Each ``student/NN_*.ipynb`` is executed as a student would run it (nbclient, from ``student/``, quick
mode, errors allowed so that every cell runs). The only errors allowed are the self-checks saying
that their exercise is not answered yet (``exercises.NotAnswered``); every self-check must say so,
and no other cell may fail: a cell that used a name defined only in a removed solution cell, or a
check that breaks on the stub in another way (a ``NameError``, a ``TypeError`` on ``...``), would show
up here. About two minutes for the ten chapters on 2 CPU cores (their quick-mode cells dominate).
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from smoothdistill_lib import course

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / course.STUDENT_DIR
NOT_ANSWERED = ("is not answered yet", "still raises NotImplementedError")


def errors(cell) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def problems(nb) -> list[str]:
    """What a student would see go wrong in the executed notebook ``nb``: one line per bad cell."""
    out = []
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errs = errors(cell)
        where = f"cell {k} ({cell.get('id')}, exercise {cell.metadata.get('exercise', '-')})"
        if course.CHECK_TAG in cell.metadata.get("tags", []):
            if not errs:
                out.append(f"{where}: the self-check passed on the stub")
            for e in errs:
                if e["ename"] != "NotAnswered" or not any(s in e["evalue"] for s in NOT_ANSWERED):
                    out.append(f"{where}: the self-check failed with {e['ename']}: {e['evalue'][:200]}, "
                               "not with 'not answered yet'")
        else:
            out += [f"{where}: {e['ename']}: {e['evalue'][:200]}" for e in errs]
    return out


def test_problems_sees_every_kind_of_failure():
    def error(ename, evalue):
        return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])

    check, stub = {"tags": [course.CHECK_TAG], "exercise": "01.1"}, {"tags": [course.STUB_TAG], "exercise": "01.1"}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = ...", metadata=stub),
        nbformat.v4.new_code_cell("check(x)", metadata=check,
                                  outputs=[error("NotAnswered", "`x` is not answered yet: replace ...")]),
        nbformat.v4.new_code_cell("check(y)", metadata=check, outputs=[error("NameError", "name 'y' is not defined")]),
        nbformat.v4.new_code_cell("check(z)", metadata=check),
        nbformat.v4.new_code_cell("print(solution)", outputs=[error("NameError", "name 'solution' is not defined")]),
    ])
    found = problems(nb)
    assert len(found) == 3
    assert "cell 2" in found[0] and "NameError" in found[0] and "not with 'not answered yet'" in found[0]
    assert "cell 3" in found[1] and "passed on the stub" in found[1]
    assert "cell 4" in found[2] and "name 'solution' is not defined" in found[2]
    nb.cells = nb.cells[:2]
    assert problems(nb) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(STUDENT.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_a_student_notebook_runs_and_only_its_checks_wait_for_answers(path, monkeypatch):
    nb = nbformat.read(path, 4)
    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(STUDENT)}}).execute()
    assert not problems(nb), "\n".join(problems(nb))
    # the notebook was a student's: its exercises were there to fail
    n_checks = sum(course.CHECK_TAG in c.metadata.get("tags", []) for c in nb.cells)
    assert n_checks == sum(1 for c in nb.cells if errors(c)), path.name
