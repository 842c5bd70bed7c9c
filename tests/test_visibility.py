"""What the HTML book hides is collapsed in JupyterLab and Colab too (``tools/sync_visibility.py``).

The tool is tested on small notebooks written here; ``test_notebooks_hide_in_every_view`` checks the
book's own notebooks and fails until the tool has been run on them after a tag change (marked
``needs_notebook_update``: ``pytest -m needs_notebook_update`` lists every such check).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import sync_visibility as sv  # noqa: E402


def _code(tags=(), **metadata):
    return nbformat.v4.new_code_cell("x = 1", metadata={"tags": list(tags), **metadata} if tags else metadata)


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter", metadata={"tags": ["hide-input"]}),  # markdown: untouched
        _code(["remove-input"]),                                   # 1 prose cell
        _code(["hide-input"]),                                     # 2 set-up cell
        _code(["hide-output"]),                                    # 3 output only
        _code(["hide-cell"]),                                      # 4
        _code(["solution", "hide-input"], exercise="01.1"),        # 5 a solution
        _code(["remove-cell"], jupyter={"source_hidden": True}),   # 6 left as it is
        _code(jupyter={"source_hidden": True, "outputs_hidden": True}, cellView="form"),  # 7 stale: no tag
        _code(["hide-input"], jupyter={"outputs_hidden": True, "other": 1}),  # 8 keeps its own key
        _code(["nbval-check-output"]),                             # 9 nothing to do
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


def _write(path: Path, nb) -> str:
    text = nbformat.writes(nb) + "\n"
    path.write_text(text)
    return text


def test_tags_decide_the_metadata_of_every_view():
    synced, changes = sv.sync_notebook(_notebook())
    c = synced.cells
    assert c[0].metadata == {"tags": ["hide-input"]}
    for i in (1, 2):
        assert c[i].metadata["jupyter"] == {"source_hidden": True} and c[i].metadata["cellView"] == "form"
    assert c[3].metadata["jupyter"] == {"outputs_hidden": True} and "cellView" not in c[3].metadata
    assert c[4].metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert c[4].metadata["cellView"] == "form"
    # a solution: code and output behind one toggle in the HTML (hide-cell), both collapsed elsewhere
    assert c[5].metadata["tags"] == ["solution", "hide-cell"] and c[5].metadata["exercise"] == "01.1"
    assert c[5].metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert c[5].metadata["cellView"] == "form"
    assert c[6].metadata == {"tags": ["remove-cell"], "jupyter": {"source_hidden": True}}
    assert c[7].metadata == {}  # hiding that no tag asks for is removed
    assert c[8].metadata["jupyter"] == {"source_hidden": True, "other": 1}
    assert c[9].metadata == {"tags": ["nbval-check-output"]}
    assert [line.split(":")[0] for line in changes] == [f"cell {i} (c{i})" for i in (1, 2, 3, 4, 5, 7, 8)]
    assert "tags ['solution', 'hide-input'] -> ['solution', 'hide-cell']" in changes[4]


def test_solution_tags_become_one_hide_cell():
    assert sv.desired_tags(["solution", "hide-input"]) == ["solution", "hide-cell"]
    assert sv.desired_tags(["hide-input", "solution", "hide-output"]) == ["hide-cell", "solution"]
    assert sv.desired_tags(["solution"]) == ["solution", "hide-cell"]
    assert sv.desired_tags(["hide-input", "x"]) == ["hide-input", "x"]  # not a solution: kept


def test_check_lists_cells_then_the_tool_syncs_and_is_idempotent(tmp_path, capsys):
    path = tmp_path / "01_x.ipynb"
    before = _write(path, _notebook())
    assert sv.main(["--check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and all(line.startswith(f"{path}: cell ") for line in out)
    assert path.read_text() == before  # --check writes nothing

    assert sv.main([str(path)]) == 0
    after = path.read_text()
    assert after != before and after.endswith("}\n") and after.startswith('{\n "cells": [\n  {\n')  # indent 1
    assert nbformat.read(path, as_version=4).cells[5].metadata["tags"] == ["solution", "hide-cell"]
    capsys.readouterr()
    assert sv.main(["--check", str(path)]) == 0 and capsys.readouterr().out == ""
    mtime = path.stat().st_mtime_ns
    assert sv.main([str(path)]) == 0
    assert path.read_text() == after and path.stat().st_mtime_ns == mtime  # in sync: not rewritten


def test_only_metadata_lines_change(tmp_path):
    """A synced file differs from the original only in hiding metadata lines and the solution's tag
    (what ``git diff`` shows after the tool ran on the book)."""
    path = tmp_path / "01_x.ipynb"
    before = _write(path, _notebook()).splitlines()
    sv.main([str(path)])
    changed = [line[1:].strip() for line in difflib.unified_diff(before, path.read_text().splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    metadata = {'"cellView": "form",', '"jupyter": {', "},", '"source_hidden": true', '"source_hidden": true,',
                '"outputs_hidden": true', '"outputs_hidden": true,', '"hide-input"', '"hide-cell"', '"metadata": {},',
                '"metadata": {', "}", '"tags": [', "]"}
    assert changed and set(changed) <= metadata, set(changed) - metadata
    assert sum(line == '"hide-cell"' for line in changed) == 1


def test_missing_file_is_an_error(tmp_path, capsys):
    assert sv.main([str(tmp_path / "none.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err


@pytest.mark.needs_notebook_update
def test_notebooks_hide_in_every_view():
    """Every notebook of book/ and student/ is in sync with its tags. Fails after a tag change until
    ``.venv/bin/python tools/sync_visibility.py`` is run (then ``tools/make_student_edition.py``)."""
    problems = [line for path in sv.default_paths() for line in sv.sync_file(path, check=True)]
    assert not problems, f"{len(problems)} cell(s) out of sync; run tools/sync_visibility.py:\n" + "\n".join(problems[:40])
