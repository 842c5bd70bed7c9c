"""The course kit (smoothdistill_lib.course, tools/make_student_edition.py, book/instructor_guide.ipynb):
the student edition is up to date and shows no solution, the guide reads the chapters, and the Colab
links of the README and the guide are built from _config.yml's repository."""

import re
import sys
from pathlib import Path

import nbformat
import pytest

from smoothdistill_lib import course

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
