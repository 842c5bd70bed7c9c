"""Make JupyterLab and Colab hide what the HTML book hides: cell metadata written from cell tags.

    .venv/bin/python tools/sync_visibility.py            # rewrite book/*.ipynb and student/*.ipynb
    .venv/bin/python tools/sync_visibility.py --check    # exit 1, one line per cell out of sync
    .venv/bin/python tools/sync_visibility.py book/05_ema_teacher.ipynb   # just these files

The tags are the one source (myst-nb reads them for the HTML); this tool derives from them what the
other front ends read, for every code cell:

==================================  ====================================================================
tag(s)                              metadata written
==================================  ====================================================================
``remove-input``, ``hide-input``    ``jupyter.source_hidden: true``
``hide-output``                     ``jupyter.outputs_hidden: true``
``hide-cell``                       both
``solution``                        its ``hide-input`` becomes ``hide-cell`` (myst-nb then puts code and
                                    output behind ONE "Show code cell content" toggle), and both
``remove-cell``                     nothing: the cell is left exactly as it is
==================================  ====================================================================

Every code cell whose source is hidden also gets Colab's form view, ``cellView: "form"`` (Colab
shows the cell collapsed with a "Show code" link; Colab ignores ``jupyter.source_hidden``). Hiding
metadata that no tag asks for is removed, so the tags stay the only switch. Other metadata
(``jupyter`` keys of its own, ``mystnb``, ``tags`` order, ids) is kept.

The tool is idempotent and writes with nbformat (indent 1, like the repository's notebooks), keeping
a file's final newline as it was: a notebook already in sync is not rewritten, and a rewritten one
differs only in the metadata above. Run it after adding or changing a cell's tags and before
``tools/make_student_edition.py`` (the student edition copies the chapters' cell metadata);
``tests/test_visibility.py::test_notebooks_hide_in_every_view`` fails while a notebook is out of sync.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GLOBS = ("book/*.ipynb", "student/*.ipynb")

SOLUTION = "solution"
HIDES_SOURCE = {"remove-input", "hide-input", "hide-cell"}
HIDES_OUTPUT = {"hide-output", "hide-cell"}


def desired_tags(tags: list[str]) -> list[str]:
    """``tags`` with a solution's ``hide-input`` (or ``hide-output``) replaced by one ``hide-cell``,
    in place of the first of them (order otherwise kept)."""
    if SOLUTION not in tags:
        return list(tags)
    out: list[str] = []
    for t in tags:
        if t in ("hide-input", "hide-output", "hide-cell"):
            if "hide-cell" not in out:
                out.append("hide-cell")
        else:
            out.append(t)
    if "hide-cell" not in out:
        out.append("hide-cell")
    return out


def synced_cell(cell) -> nbformat.NotebookNode:
    """A copy of ``cell`` with its tags and hiding metadata as the tags ask (see the module doc)."""
    new = copy.deepcopy(cell)
    if new.get("cell_type") != "code":
        return new
    tags = list(new.metadata.get("tags", []))
    if "remove-cell" in tags:  # not in the HTML at all; in Jupyter it is left as its author keeps it
        return new
    tags = desired_tags(tags)
    if tags != list(new.metadata.get("tags", [])):
        new.metadata["tags"] = tags
    source_hidden = bool(HIDES_SOURCE & set(tags))
    outputs_hidden = bool(HIDES_OUTPUT & set(tags))
    jupyter = dict(new.metadata.get("jupyter", {}))
    for key, on in (("source_hidden", source_hidden), ("outputs_hidden", outputs_hidden)):
        if on:
            jupyter[key] = True
        else:
            jupyter.pop(key, None)
    if jupyter:
        new.metadata["jupyter"] = jupyter
    else:
        new.metadata.pop("jupyter", None)
    # Colab: the form view hides the code only; a cell with only its output hidden keeps its code shown
    if source_hidden:
        new.metadata["cellView"] = "form"
    else:
        new.metadata.pop("cellView", None)
    return new


def _describe(cell, new) -> str:
    """What differs between ``cell`` and its synced form, in a few words."""
    what = []
    if list(cell.metadata.get("tags", [])) != list(new.metadata.get("tags", [])):
        what.append(f"tags {list(cell.metadata.get('tags', []))} -> {list(new.metadata.get('tags', []))}")
    old_j, new_j = cell.metadata.get("jupyter", {}), new.metadata.get("jupyter", {})
    for key in ("source_hidden", "outputs_hidden"):
        if bool(old_j.get(key)) != bool(new_j.get(key)):
            what.append(f"jupyter.{key} should be {bool(new_j.get(key))}")
    if cell.metadata.get("cellView") != new.metadata.get("cellView"):
        want = new.metadata.get("cellView")
        what.append("cellView should be 'form'" if want else "cellView 'form' without hidden code")
    return "; ".join(what) or "metadata differs"


def sync_notebook(notebook) -> tuple[nbformat.NotebookNode, list[str]]:
    """(synced copy of ``notebook``, one description per changed cell: ``cell <i> (<id>): ...``)."""
    out = copy.deepcopy(notebook)
    changes = []
    for i, cell in enumerate(notebook.cells):
        new = synced_cell(cell)
        if new != cell:
            changes.append(f"cell {i} ({cell.get('id', '?')}): {_describe(cell, new)}")
            out.cells[i] = new
    return out, changes


def sync_file(path: Path, check: bool = False) -> list[str]:
    """Sync one notebook file (``check``: only report). Returns one line per cell out of sync."""
    text = path.read_text()
    notebook = nbformat.read(path, as_version=4)
    synced, changes = sync_notebook(notebook)
    if changes and not check:
        new_text = nbformat.writes(synced)  # indent 1, as jupyter and nbclient write
        if text.endswith("\n") and not new_text.endswith("\n"):
            new_text += "\n"
        path.write_text(new_text)
    return [f"{path}: {c}" for c in changes]


def default_paths(root: Path = ROOT) -> list[Path]:
    return [p for pattern in DEFAULT_GLOBS for p in sorted(root.glob(pattern))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: book/*.ipynb and student/*.ipynb")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a cell is out of sync")
    args = p.parse_args(argv)
    paths = args.notebooks or default_paths()
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        print(f"error: no notebook at {', '.join(missing)}", file=sys.stderr)
        return 2
    lines = [line for path in paths for line in sync_file(path, check=args.check)]
    for line in lines:
        print(line)
    files = len({line.split(": cell ")[0] for line in lines})
    if args.check:
        print(f"{len(paths)} notebook(s) checked, {len(lines)} cell(s) in {files} notebook(s) out of sync"
              + ("; run tools/sync_visibility.py" if lines else ""), file=sys.stderr)
        return 1 if lines else 0
    print(f"{len(paths)} notebook(s) checked, {len(lines)} cell(s) in {files} notebook(s) updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
