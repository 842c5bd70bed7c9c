"""Every self-checking exercise works: its check fails on the stub and passes on the solution.

For each chapter with exercises (cells tagged ``exercise-stub`` / ``solution`` / ``exercise-check``,
grouped by ``metadata["exercise"]``), one kernel runs, in quick mode from ``book/``, the chapter's
code cells before its "## Exercises" heading (the context the exercises use), then per exercise: the
stub, the check (which must raise ``exercises.ExerciseError``: ``NotAnswered`` or ``WrongAnswer``,
not a NameError or a pass), the solution, and the check again (which must pass and print its line).
About a minute in all on 2 CPU cores (the chapters' quick-mode context dominates).
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from smoothdistill_lib import course

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
WITH_EXERCISES = [p for p in course.chapters(BOOK)
                  if any(course.STUB_TAG in c.metadata.get("tags", []) for c in nbformat.read(p, 4).cells)]


def exercise_cells(nb):
    """{exercise: {"stub": cell, "solution": cell, "check": cell}} in chapter order."""
    groups = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        for tag, role in ((course.STUB_TAG, "stub"), (course.SOLUTION_TAG, "solution"), (course.CHECK_TAG, "check")):
            if tag in tags:
                groups.setdefault(cell.metadata["exercise"], {})[role] = cell
    return groups


def must_fail(check_source: str, exercise: str) -> str:
    body = "\n".join("    " + line for line in check_source.splitlines())
    return (f"from smoothdistill_lib.exercises import ExerciseError as _ExerciseError\ntry:\n{body}\n"
            f"except _ExerciseError as _e:\n    print('STUB FAILS:', _e)\nelse:\n"
            f"    raise RuntimeError('the self-check of exercise {exercise} passed on its stub')")


def test_every_chapter_with_a_stub_has_complete_exercises():
    assert WITH_EXERCISES == course.chapters(BOOK)  # every chapter has at least one self-checking exercise
    for path in WITH_EXERCISES:
        for name, roles in exercise_cells(nbformat.read(path, 4)).items():
            assert set(roles) == {"stub", "solution", "check"}, (path.name, name, set(roles))
            assert "..." in roles["stub"].source or "NotImplementedError" in roles["stub"].source, name
            assert "exercises." in roles["check"].source, name


@pytest.mark.slow
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_checks_fail_on_stubs_and_pass_on_solutions(path, monkeypatch):
    nb = nbformat.read(path, 4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    context = [c for c in nb.cells[:start] if c.cell_type == "code"]
    groups = exercise_cells(nb)
    cells = [nbformat.v4.new_code_cell(c.source) for c in context]
    for name, g in groups.items():
        cells += [nbformat.v4.new_code_cell(g["stub"].source),
                  nbformat.v4.new_code_cell(must_fail(g["check"].source, name)),
                  nbformat.v4.new_code_cell(g["solution"].source),
                  nbformat.v4.new_code_cell(g["check"].source)]
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(run, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}).execute()
    tail = run.cells[len(context):]
    for k, name in enumerate(groups):
        failed = "".join(o.get("text", "") for o in tail[4 * k + 1].outputs)
        assert failed.startswith("STUB FAILS: `") and "not answered yet" in failed or "NotImplementedError" in failed, failed
        passed = "".join(o.get("text", "") for o in tail[4 * k + 3].outputs)
        assert passed.strip().endswith("correct."), (name, passed)
