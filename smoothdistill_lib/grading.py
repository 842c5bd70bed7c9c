"""Grading a class with otter-grader: the chapters' exercises as otter assignments, and the plugin grading needs.

``tools/export_otter.py`` writes, for a chapter, an otter **master notebook** (otter's assignment
format, read by ``otter assign``) built by :func:`master_notebook`:

- every cell of the chapter except the solutions (markdown ``<details>`` solutions are dropped as in
  the student edition; outputs are cleared, since grading executes the notebook anyway);
- each self-checking exercise whose check cell calls ``exercises.verify`` as one otter *question*
  (``ex3_1`` for exercise 3.1) worth :attr:`exercises.Exercise.points`: its answer cell (the stub in
  the student's copy, the solution in otter's autograder copy), a **public** test (1 point: the
  self-check the student sees, ``exercises.grade(number, env)``), a **hidden** test (the rest: the
  exercise's hidden check, inputs the student never sees, ``exercises.grade(number, env, hidden=True)``)
  and the self-check cell.

``otter assign`` turns it into ``autograder.zip``; ``otter run -a autograder.zip submission.ipynb``
(otter 7's grading without Docker) executes a student's notebook (the book's student edition or
otter's student copy, both work) and runs the tests in the notebook's global names.

One thing needs help: a chapter's set-up cell moves into the book's ``book/`` folder (where its
relative paths point), but otter reads its test files relative to the folder it started the
notebook in. :class:`BookGrading`, an otter plugin named in the autograder's configuration, appends
a last cell that moves back to the submission's folder, and, when the export pinned a run mode,
prepends one that sets ``SMOOTHDISTILL_MODE`` (a student's numbers that depend on the mode must be
graded in the mode they were made in).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml
from otter.plugins import AbstractOtterPlugin

from smoothdistill_lib import course, exercises
from smoothdistill_lib.config import MODES

__all__ = ["PLUGIN", "BookGrading", "question_name", "exercise_number", "converted", "master_notebook"]

#: the importable name of the plugin, as the autograder's configuration lists it
PLUGIN = "smoothdistill_lib.grading.BookGrading"


class BookGrading(AbstractOtterPlugin):
    """Otter plugin: returns to the submission's folder after the notebook ran (so otter finds its
    ``tests/``), and sets the run mode first when the plugin's configuration has ``mode``."""

    def before_execution(self, submission):
        """Add the two cells to the submission (a notebook) before otter executes it."""
        mode = (self.plugin_config or {}).get("mode")
        if mode:
            submission.cells.insert(0, nbformat.v4.new_code_cell(
                f"import os\nos.environ['SMOOTHDISTILL_MODE'] = {mode!r}  # the mode the autograder was made for"))
        folder = str(Path(self.submission_path).resolve().parent)
        submission.cells.append(nbformat.v4.new_code_cell(
            f"import os\nos.chdir({folder!r})  # back to the submission's folder, where otter's tests are"))
        return submission


def exercise_number(exercise_id: str) -> str:
    """``"03.1"`` (a cell's ``metadata["exercise"]``) -> ``"3.1"`` (the number :data:`exercises.EXERCISES` uses)."""
    chapter, k = exercise_id.split(".")
    return f"{int(chapter)}.{k}"


def question_name(exercise_id: str) -> str:
    """The otter question (and test file) name of an exercise: ``"03.1"`` -> ``"ex3_1"``."""
    return "ex" + exercise_number(exercise_id).replace(".", "_")


def converted(check_cell) -> bool:
    """Does the check cell call ``exercises.verify`` for its own exercise (so the grader can run its
    check)? Exercises still checked in the open (older cells) are left out of the assignment."""
    number = exercise_number(check_cell["metadata"]["exercise"])
    return bool(re.search(rf"exercises\.verify\(\s*[\"']{re.escape(number)}[\"']", check_cell["source"])) \
        and number in exercises.EXERCISES


def _raw(text: str):
    return nbformat.v4.new_raw_cell(text)


def _test_cell(number: str, points: int, hidden: bool):
    config = f"points: {points}" + ("\nhidden: true" if hidden else "")
    name = "test_hidden" if hidden else "test_public"
    call = f'exercises.grade("{number}", env, hidden=True)' if hidden else f'exercises.grade("{number}", env)'
    return nbformat.v4.new_code_cell(
        f'""" # BEGIN TEST CONFIG\n{config}\n""" # END TEST CONFIG\n'
        f"def {name}(env):\n    from smoothdistill_lib import exercises\n\n    {call}\n")


def _question(exercise_id: str, group: dict) -> list:
    """The otter cells of one exercise: question, answer (stub as prompt, solution hidden), tests, check."""
    number = exercise_number(exercise_id)
    ex = exercises.EXERCISES[number]
    answer = (f"# BEGIN PROMPT\n{group['stub'].source}\n# END PROMPT\n"
              f"# BEGIN SOLUTION NO PROMPT\n{group['solution'].source}\n# END SOLUTION")
    return [
        _raw(f"# BEGIN QUESTION\nname: {question_name(exercise_id)}\npoints: {ex.points}\ncheck_cell: false"),
        _raw("# BEGIN SOLUTION"), nbformat.v4.new_code_cell(answer), _raw("# END SOLUTION"),
        _raw("# BEGIN TESTS"), _test_cell(number, 1, hidden=False), _test_cell(number, ex.hidden_points, hidden=True),
        _raw("# END TESTS"),
        nbformat.v4.new_code_cell(group["check"].source),
        _raw("# END QUESTION"),
    ]


def assignment_config(mode: str | None = None, run_tests: bool = False) -> str:
    """The ``# ASSIGNMENT CONFIG`` cell: no otter cells in the student's copy (the book's self-checks do
    that job), no PDFs, exception-based test files, and :class:`BookGrading` for the grader."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = {
        "init_cell": False, "check_all_cell": False, "export_cell": False, "run_tests": run_tests,
        "solutions_pdf": False, "generate": {"pdf": False, "plugins": [{PLUGIN: {"mode": mode}} if mode else PLUGIN]},
        "tests": {"files": True, "ok_format": False},
    }
    return "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False)


def master_notebook(chapter: nbformat.NotebookNode, source: str, mode: str | None = None,
                    run_tests: bool = False) -> tuple[nbformat.NotebookNode, list[str], list[str]]:
    """The otter master notebook of ``chapter`` (``source`` names it in messages), the exercise numbers
    it grades, and those left out (their check cell does not call ``exercises.verify`` yet).

    ``ValueError`` for a malformed exercise (``course.exercise_groups``) or a chapter with nothing to grade.
    """
    groups = course.exercise_groups(chapter, source)
    owner = {id(c): ex for ex, g in groups.items() for c in g.values()}
    graded = [ex for ex, g in groups.items() if converted(g["check"])]
    cells, done = [_raw(assignment_config(mode, run_tests))], set()
    for cell in chapter.cells:
        ex = owner.get(id(cell))
        if ex is not None:
            if ex in done:
                continue
            done.add(ex)
            if ex in graded:
                cells += _question(ex, groups[ex])
            else:  # not gradable yet: as in the student edition, stub and check without the solution
                cells += [_clear(groups[ex]["stub"]), _clear(groups[ex]["check"])]
            continue
        if cell.cell_type == "markdown":
            text = course._DETAILS.sub("", cell.source)
            if text.strip():
                cells.append(nbformat.v4.new_markdown_cell(text.strip("\n") if text != cell.source else text))
        elif cell.cell_type == "code":
            cells.append(_clear(cell))
    if not graded:
        raise ValueError(f"{source}: no exercise to grade (no check cell calls exercises.verify)")
    nb = nbformat.v4.new_notebook(cells=cells, metadata=chapter.metadata)
    return nb, [exercise_number(e) for e in graded], [exercise_number(e) for e in groups if e not in graded]


def _clear(cell):
    """A code cell's copy without outputs (the grader executes the notebook itself)."""
    return nbformat.v4.new_code_cell(cell.source, metadata={k: v for k, v in cell.metadata.items() if k != "exercise"})
