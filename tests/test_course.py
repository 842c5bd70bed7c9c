"""The course kit (smoothdistill_lib.course, tools/make_student_edition.py, book/instructor_guide.ipynb):
the student edition is up to date and shows no solution, the guide reads the chapters, and the Colab
links of the README and the guide are built from _config.yml's repository."""

import html
import re
import sys
from pathlib import Path

import nbformat
import pytest

from smoothdistill_lib import course, exercises

ROOT = Path(__file__).resolve().parent.parent
BOOK, STUDENT = ROOT / "book", ROOT / course.STUDENT_DIR
sys.path.insert(0, str(ROOT / "tools"))

import make_student_edition  # noqa: E402

CHAPTER = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_markdown_cell("# Title"),
    nbformat.v4.new_markdown_cell("## Learning goals\n\nAfter this chapter you can:\n- do a\n  long thing;\n- b\n\n## Time"),
    nbformat.v4.new_markdown_cell("## Exercises\n\n1. How many?"),
    nbformat.v4.new_code_cell("x = ...", metadata={"tags": ["exercise-stub"], "exercise": "01.1"}),
    nbformat.v4.new_code_cell("x = 3", metadata={"tags": ["solution", "hide-input"], "exercise": "01.1"}),
    nbformat.v4.new_code_cell("check(x)", metadata={"tags": ["exercise-check"], "exercise": "01.1"},
                              outputs=[nbformat.v4.new_output("stream", text="correct.\n")], execution_count=3),
    nbformat.v4.new_markdown_cell("<details>\n<summary>Solution</summary>\n\nThree, see chapter 5.\n\n</details>\n\n"
                                  "2. Train it again with run(...)?\n\n<details>\n<summary>Solution</summary>\n\n"
                                  "```python\nrun('multitask')\n```\n\n</details>"),
])


def test_student_edition_drops_solutions_and_clears_checks():
    s = course.student_edition(CHAPTER, "book/01_x.ipynb")
    text = nbformat.writes(s)
    assert "x = 3" not in text and "<details" not in text and "Three" not in text
    assert s.cells[1].id == "student-edition-note" and "book/01_x.ipynb" in s.cells[1].source
    stub, check = (c for c in s.cells if c.cell_type == "code")
    assert stub.source == "x = ..." and check.outputs == [] and check.execution_count is None
    assert s.cells[-1].source == "2. Train it again with run(...)?"  # the question stays, its solution goes
    assert s.metadata["smoothdistill"] == {"edition": "student", "source": "book/01_x.ipynb"}
    # a <details> that is not a Solution would leak: refused
    leaky = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("<details><summary>Hint</summary>x</details>")])
    with pytest.raises(ValueError, match="keeps a <details> block"):
        course.student_edition(leaky, "book/02_x.ipynb")
    # links to the book's other pages point into book/; chapters have their own student editions
    linked = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "[Vu](references.md), [ch. 5](05_ema_teacher.ipynb), [web](https://x.org/a.md)")])
    assert course.student_edition(linked, "book/03_x.ipynb").cells[0].source == (
        "[Vu](../book/references.md), [ch. 5](05_ema_teacher.ipynb), [web](https://x.org/a.md)")


def test_the_guide_reads_goals_exercises_and_prerequisites():
    assert course.learning_goals(CHAPTER) == ["do a long thing;", "b"]
    assert [(e["number"], e["self_check"], e["needs_training"]) for e in course.exercise_list(CHAPTER)] == [
        (1, True, False), (2, False, True)]
    chapter7 = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "As in chapters 4 and 5, and [chapter 6](06_baselines.ipynb); chapter 9 comes later.")])
    assert course.prerequisites(chapter7, 7) == [4, 5, 6]
    said = nbformat.v4.new_code_cell("say(...)", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/markdown": "as chapter 3 showed"}), nbformat.v4.new_output(
        "stream", text="chapter 2 in a print is not prose")])
    chapter7.cells.append(said)  # a say() paragraph is prose the reader reads
    assert course.prerequisites(chapter7, 7) == [3, 4, 5, 6]


def test_student_edition_is_up_to_date(tmp_path):
    fresh = make_student_edition.build(ROOT, tmp_path)
    assert sorted(fresh) == sorted(p.name for p in STUDENT.glob("*.ipynb")) == [p.name for p in course.chapters(BOOK)]
    stale = [name for name, text in fresh.items() if (STUDENT / name).read_text() != text]
    assert not stale, f"student/ is out of date for {stale}: run tools/make_student_edition.py"


@pytest.mark.parametrize("path", sorted(STUDENT.glob("*.ipynb")), ids=lambda p: p.stem)
def test_a_student_notebook_shows_no_solution(path):
    nb = nbformat.read(path, 4)
    # no solution anywhere (a collapsed provenance banner in an output is a <details> too, so only
    # markdown cells must hold none)
    assert "<summary>Solution" not in path.read_text()
    assert not any("<details" in c.source for c in nb.cells if c.cell_type == "markdown")
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert course.SOLUTION_TAG not in tags
    for c in nb.cells:
        if {course.STUB_TAG, course.CHECK_TAG} & set(c.metadata.get("tags", [])):
            assert c.outputs == [], (path.name, c.id)
    # the chapter's exercises are all there, each stub with its check
    chapter = nbformat.read(BOOK / path.name, 4)
    assert tags.count(course.STUB_TAG) == tags.count(course.CHECK_TAG) == sum(
        course.STUB_TAG in c.metadata.get("tags", []) for c in chapter.cells)
    # the set-up cell finds the library from student/ as from book/
    assert '"../smoothdistill_lib"' in nb.cells[2].source and "colab.bootstrap" in nb.cells[2].source


def test_colab_links_are_built_from_the_config():
    url = course.repository_url(ROOT / "_config.yml")
    assert url.startswith("https://github.com/")
    owner_repo = url.split("github.com/", 1)[1]
    expected = {course.colab_url(ROOT / "_config.yml", f"student/{p.name}") for p in course.chapters(BOOK)}
    assert all(u.startswith(f"https://colab.research.google.com/github/{owner_repo}/blob/") for u in expected)
    readme = set(re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", (ROOT / "README.md").read_text()))
    guide = set(re.findall(r"https://colab\.research\.google\.com/github/[^)\s\"]+?\.ipynb",
                           (BOOK / "instructor_guide.ipynb").read_text()))
    assert readme == expected and guide == expected


def test_the_guide_is_in_the_book_with_measured_times():
    assert "book/instructor_guide" in (ROOT / "_toc.yml").read_text()
    guide = nbformat.read(BOOK / "instructor_guide.ipynb", 4)
    shown = "".join(str(o.get("data", o.get("text", ""))) for c in guide.cells if c.cell_type == "code" for o in c.outputs)
    # every chapter's quick and demo times are measured (book/_timings.json) and shown
    assert "not measured" not in shown and "Times measured on: cpu" in shown
    for stem in (p.stem for p in course.chapters(BOOK)):
        assert f"student/{stem}.ipynb" in shown


# ---- tools/make_student_edition.py: one line and exit 2 on bad input; no solution leaks ------------------

def _stub(ex="01.1", **kw):
    return nbformat.v4.new_code_cell("x = ...", metadata={"tags": ["exercise-stub"], "exercise": ex}, **kw)


def _solution(ex="01.1", tags=("solution",)):
    return nbformat.v4.new_code_cell("x = 31337", metadata={"tags": list(tags), "exercise": ex})


def _check(ex="01.1"):
    return nbformat.v4.new_code_cell("check(x)", metadata={"tags": ["exercise-check"], "exercise": ex})


def _book(tmp_path, cells=None, text=None, name="01_x.ipynb"):
    """A repository root in tmp_path with one chapter (cells, or raw text) and an empty student/."""
    (tmp_path / "book").mkdir()
    (tmp_path / "student").mkdir()
    path = tmp_path / "book" / name
    if text is not None:
        path.write_text(text)
    else:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T")] + cells), path)
    return tmp_path


def _run(root, capsys, *argv):
    rc = make_student_edition.main(list(argv), root=root)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(("tags", "label"), [(("Solution",), "capitalised"), (("solutions",), "plural"),
                                             ((" SOLUTION ", "hide-input"), "upper case, spaced")])
def test_a_solution_tag_is_read_case_insensitively(tmp_path, capsys, tags, label):
    root = _book(tmp_path, [_stub(), _solution(tags=tags), _check()])
    rc, out, err = _run(root, capsys)
    assert (rc, err) == (0, ""), label
    written = (root / "student" / "01_x.ipynb").read_text()
    assert "31337" not in written and "x = ..." in written


@pytest.mark.parametrize(("cells", "says"), [
    ([_stub(), _solution()], "exercise 01.1 has no check cell"),
    ([_stub(), _solution(), _check(), _check()], "exercise 01.1 has a second check cell"),
    ([_check(), _stub(), _solution()], "the check of exercise 01.1 comes before its stub"),
    ([_stub(ex="1.1"), _solution(ex="1.1"), _check(ex="1.1")], "not an id like '01.1'"),
    ([nbformat.v4.new_code_cell("x = 3", metadata={"exercise": "01.1"}), _stub(), _check()],
     "belongs to exercise '01.1' but has none of the tags"),
    ([_stub(), _solution(tags=("solution", "exercise-check")), _check()], "tagged as solution and check at once"),
], ids=["no check", "two checks", "check first", "bad id", "untagged exercise cell", "two roles"])
def test_a_malformed_exercise_stops_the_tool_with_one_line(tmp_path, capsys, cells, says):
    root = _book(tmp_path, cells)
    rc, out, err = _run(root, capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: book/01_x.ipynb: cell") or says in err
    assert says in err and "Traceback" not in err
    assert not list((root / "student").glob("*.ipynb"))  # nothing written


@pytest.mark.parametrize(("cell", "says"), [
    (nbformat.v4.new_markdown_cell("### Solution\n\nx is 3."), "solution heading"),
    (nbformat.v4.new_markdown_cell("**Answer:**\n\nx is 3."), "solution heading"),
    (nbformat.v4.new_code_cell("# BEGIN SOLUTION\nx = 3\n# END SOLUTION"), "solution comment"),
    (nbformat.v4.new_code_cell("# Solution\nx = 3"), "solution comment"),
    (nbformat.v4.new_code_cell("x = 3", metadata={"tags": ["hide-solution"]}), "mentions a solution"),
    (nbformat.v4.new_markdown_cell('<div class="solution">x is 3</div>'), "HTML that marks a solution"),
    (nbformat.v4.new_code_cell("x = 3", id="ex01-1-solution"), "its id says solution"),
], ids=["heading", "bold label", "otter markers", "comment", "odd tag", "html", "id"])
def test_a_solution_outside_the_known_markers_is_refused(tmp_path, capsys, cell, says):
    root = _book(tmp_path, [_stub(), _solution(), _check(), cell])
    rc, out, err = _run(root, capsys)
    assert rc == 2 and err.count("\n") == 1 and says in err and "Traceback" not in err
    assert not list((root / "student").glob("*.ipynb"))


@pytest.mark.parametrize("text", ["this is not JSON", "[1, 2]", '{"cells": 3, "nbformat": 4, "nbformat_minor": 5, '
                                  '"metadata": {}}'], ids=["not json", "a list", "cells not a list"])
def test_a_chapter_that_is_not_a_notebook_stops_the_tool_with_one_line(tmp_path, capsys, text):
    root = _book(tmp_path, text=text)
    rc, out, err = _run(root, capsys)
    assert rc == 2 and err.count("\n") == 1 and "01_x.ipynb: not a readable notebook" in err
    rc, out, err = _run(root, capsys, "--check")
    assert rc == 2 and "not a readable notebook" in err


def test_a_missing_output_folder_stops_the_tool_with_one_line(tmp_path, capsys):
    root = _book(tmp_path, [_stub(), _solution(), _check()])
    for argv in ([], ["--check"]):
        rc, out, err = _run(root, capsys, "--out", str(tmp_path / "nowhere" / "student"), *argv)
        assert rc == 2 and err == f"error: output folder {tmp_path / 'nowhere' / 'student'} does not exist (create it, or pass --out)\n"


def test_the_real_chapters_have_well_formed_exercises():
    for path in course.chapters(BOOK):
        groups = course.exercise_groups(nbformat.read(path, 4), path.name)
        assert groups and all(set(g) == {"stub", "solution", "check"} for g in groups.values()), path.name


def test_each_exercise_has_one_place_in_a_session():
    uses = [course.session_use(e) for e in course.exercise_list(CHAPTER)]
    assert uses == ["in class (self-check)", "homework"]
    assert course.session_use({"needs_training": True, "self_check": True}) == "homework"  # e.g. 9.2: once
    assert course.session_use({"needs_training": False, "self_check": False}) == "in class (discussion)"


def _table(cell) -> list[list[str]]:
    """The rows (header first) of the HTML table a guide cell displays, as text."""
    text = next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))
    return [[html.unescape(re.sub(r"<.*?>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr.*?</tr>", text, re.S)]


def test_the_guide_lists_each_exercise_once_and_covers_grading_hosting_data_and_time():
    guide = nbformat.read(BOOK / "instructor_guide.ipynb", 4)
    cells = {c.get("id"): c for c in guide.cells}
    markdown = "\n".join(c.source for c in guide.cells if c.cell_type == "markdown")
    for heading in ("## Grading a class", "## Hosting", "## Data for students", "## Planning time"):
        assert heading in markdown
    assert "tools/export_otter.py grade" in markdown and "nbgitpuller" in markdown and "SMOOTHDISTILL_DATA" in markdown
    # the 90-minute table: every exercise of a chapter exactly once (9.2 self-checks AND trains: homework)
    header, *rows = _table(cells["966adaba"])
    columns = [header.index(c) for c in ("in class (self-check)", "in class (discussion)", "homework (trains a model)")]
    for row, path in zip(rows, course.chapters(BOOK)):
        listed = [n for k in columns if row[k] != "-" for n in re.split(r",\s*", row[k])]
        assert sorted(listed, key=int) == [str(e["number"]) for e in course.exercise_list(nbformat.read(path, 4))], row
    assert [row[header.index("homework (trains a model)")] for row in rows if row[0].startswith("Ablations")] == ["2"]
    # the points table comes from the library; the planning table labels what is not measured
    header, *rows = _table(cells["guide-grading-table"])
    assert {r[1] for r in rows} == set(exercises.EXERCISES)
    header, *rows = _table(cells["guide-planning-table"])
    assert "Colab CPU, demo (estimate)" in header and all(r[header.index("GPU")] == "no run yet" for r in rows)
    assert all(r[header.index("quick, loaded")] != "not measured" for r in rows)
