"""Grading a class (smoothdistill_lib.grading, tools/export_otter.py): the chapters' exercises become an
otter assignment (points per exercise, a public test the student sees, a hidden one), and the REAL
grader, otter-grader 7 installed from requirements.txt (nothing is installed here), grades
notebooks end to end without Docker: ``otter assign`` builds the autograder of chapter 3 (two
exercises, the chapter runs in seconds in quick mode), ``otter run`` grades (a) the student edition
answered with the solutions: full points, and (b) one with a wrong answer to exercise 3.2: fewer
points, exercise 3.1 named with its full points and 3.2 with none.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from smoothdistill_lib import course, exercises, grading

ROOT = Path(__file__).resolve().parent.parent
BOOK, STUDENT = ROOT / "book", ROOT / course.STUDENT_DIR
CHAPTER = BOOK / "03_windows_and_leakage.ipynb"
sys.path.insert(0, str(ROOT / "tools"))

import export_otter  # noqa: E402


def _cells_between(nb, begin, end):
    out, inside = [], False
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.startswith(begin):
            inside = True
        elif c.cell_type == "raw" and c.source.startswith(end):
            inside = False
        elif inside:
            out.append(c)
    return out


def test_the_master_notebook_is_otters_assignment_format():
    chapter = nbformat.read(CHAPTER, 4)
    master, graded, skipped = grading.master_notebook(chapter, "book/03_windows_and_leakage.ipynb", mode="quick")
    assert (graded, skipped) == (["3.1", "3.2"], [])
    raw = [c.source for c in master.cells if c.cell_type == "raw"]
    head, config = raw[0].split("\n", 1)
    assert head == "# ASSIGNMENT CONFIG" and yaml.safe_load(config) == {
        "init_cell": False, "check_all_cell": False, "export_cell": False, "run_tests": False, "solutions_pdf": False,
        "generate": {"pdf": False, "plugins": [{grading.PLUGIN: {"mode": "quick"}}]},
        "tests": {"files": True, "ok_format": False}}
    for name, number in (("ex3_1", "3.1"), ("ex3_2", "3.2")):
        points = exercises.EXERCISES[number].points
        assert f"# BEGIN QUESTION\nname: {name}\npoints: {points}\ncheck_cell: false" in raw
    # each answer cell: the stub as otter's prompt, the chapter's solution inside the solution markers
    answers = _cells_between(master, "# BEGIN SOLUTION", "# END SOLUTION")
    solutions = {c.metadata["exercise"]: c.source for c in chapter.cells if "solution" in c.metadata.get("tags", [])}
    for cell, ex in zip(answers, ("03.1", "03.2")):
        prompt, solution = cell.source.split("# END PROMPT\n# BEGIN SOLUTION NO PROMPT\n")
        assert prompt.startswith("# BEGIN PROMPT\n# Exercise") and "..." in prompt
        assert solution == solutions[ex] + "\n# END SOLUTION"
    # a public test (1 point) and a hidden one (the rest) per question, calling the library's checks
    tests = [c.source for c in _cells_between(master, "# BEGIN TESTS", "# END TESTS")]
    assert tests[0] == ('""" # BEGIN TEST CONFIG\npoints: 1\n""" # END TEST CONFIG\ndef test_public(env):\n'
                        '    from smoothdistill_lib import exercises\n\n    exercises.grade("3.1", env)\n')
    assert 'hidden: true' in tests[1] and 'exercises.grade("3.1", env, hidden=True)' in tests[1]
    # no solution outside the markers: not the solution cells' code, not the markdown <details> answers
    outside = [c.source for c in master.cells if c not in answers]
    assert not any(s in text for s in solutions.values() for text in outside)
    assert not any("<details>" in c.source for c in master.cells if c.cell_type == "markdown")
    assert all(c.get("outputs", []) == [] for c in master.cells if c.cell_type == "code")


def test_an_exercise_checked_in_the_open_is_left_out():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = ...", metadata={"tags": ["exercise-stub"], "exercise": "01.1"}),
        nbformat.v4.new_code_cell("x = 69", metadata={"tags": ["solution"], "exercise": "01.1"}),
        nbformat.v4.new_code_cell("assert x == 69", metadata={"tags": ["exercise-check"], "exercise": "01.1"}),
        nbformat.v4.new_code_cell("y = ...", metadata={"tags": ["exercise-stub"], "exercise": "01.2"}),
        nbformat.v4.new_code_cell("y = 1", metadata={"tags": ["solution"], "exercise": "01.2"}),
        nbformat.v4.new_code_cell('exercises.verify("1.1", steps_to_half=y)',
                                  metadata={"tags": ["exercise-check"], "exercise": "01.2"}),
    ])
    # 01.1's check does not call the library; 01.2's calls it for another exercise: neither is graded
    with pytest.raises(ValueError, match="no exercise to grade"):
        grading.master_notebook(nb, "book/01_x.ipynb")
    nb.cells[2].source = 'exercises.verify("1.1", steps_to_half=x)'
    master, graded, skipped = grading.master_notebook(nb, "book/01_x.ipynb")
    assert (graded, skipped) == (["1.1"], ["1.2"])
    assert "y = 1" not in nbformat.writes(master)  # the ungraded exercise's solution is dropped too
    assert grading.question_name("12.2") == "ex12_2" and grading.exercise_number("05.3") == "5.3"


def test_the_plugin_returns_to_the_submission_folder_and_pins_the_mode(tmp_path):
    submission = tmp_path / "alice.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    plugin = grading.BookGrading(str(submission), {}, {"mode": "quick"})
    out = plugin.before_execution(nb)
    assert out.cells[0].source.startswith("import os\nos.environ['SMOOTHDISTILL_MODE'] = 'quick'")
    assert out.cells[-1].source.startswith(f"import os\nos.chdir({str(tmp_path)!r})")
    plain = grading.BookGrading(str(submission), {}, {}).before_execution(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]))
    assert [c.source for c in plain.cells][0] == "x = 1" and len(plain.cells) == 2


def test_the_export_tool_says_one_line_on_bad_input(capsys):
    assert export_otter.main(["export", "99_nothing"]) == 2
    assert capsys.readouterr().err.startswith("error: no chapter '99_nothing'; choose from 01_preface")
    assert export_otter.main(["grade", "nowhere/autograder.zip", "a.ipynb"]) == 2
    err = capsys.readouterr().err
    assert err == "error: no autograder at nowhere/autograder.zip: run `tools/export_otter.py export` first\n"


def _submission(path: Path, answers: dict[str, str]) -> Path:
    """The student edition of chapter 3 with ``answers`` (exercise id -> code) in its answer cells."""
    nb = nbformat.read(STUDENT / CHAPTER.name, 4)
    for cell in nb.cells:
        if course.role(cell) == "stub":
            cell.source = answers[cell.metadata["exercise"]]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_the_real_grader_gives_full_points_to_right_answers_and_names_the_wrong_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOOTHDISTILL_MODE", "quick")  # the kernel otter starts inherits it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = export_otter.export_chapter(CHAPTER, tmp_path / "grading", mode="quick")  # runs `otter assign`
    assert result["graded"] == ["3.1", "3.2"] and result["points"] == 4
    autograder = result["autograder"]
    assert autograder.is_file() and (tmp_path / "grading" / CHAPTER.stem / "dist" / "student" / CHAPTER.name).is_file()

    solutions = {c.metadata["exercise"]: c.source for c in nbformat.read(CHAPTER, 4).cells
                 if course.role(c) == "solution"}
    right = _submission(tmp_path / "right.ipynb", solutions)
    wrong = _submission(tmp_path / "wrong.ipynb", {
        **solutions, "03.2": 'drops_to_zero = {"shared_samples", "same_moment_other_placement"}'})

    # (a) right answers: full points, each question at its maximum (otter run, no Docker)
    assert export_otter.grade_submission(autograder, right, timeout=900) == {"ex3_1": (2.0, 2.0), "ex3_2": (2.0, 2.0)}
    # (b) a wrong answer: fewer points; the right exercise keeps its points, the wrong one has none;
    # the same through the tool's command line, with the CSV a gradebook imports
    scores = tmp_path / "scores.csv"
    assert export_otter.main(["grade", str(autograder), str(wrong), "--csv", str(scores)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "wrong.ipynb: 2 / 4 (ex3_1 2/2, ex3_2 0/2)"
    assert list(csv.DictReader(scores.open())) == [
        {"submission": "wrong.ipynb", "ex3_1": "2", "ex3_2": "0", "total": "2", "possible": "4"}]
