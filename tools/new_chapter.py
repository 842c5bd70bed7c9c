"""Start a chapter from the template: ``book/_template.ipynb`` -> ``book/<NN_name>.ipynb``.

    .venv/bin/python tools/new_chapter.py 04_mtlnet "MTL-net: one network, two heads"

Fills in the title and the chapter id (used by the "time to run" table) and checks that the
template's set-up cell points at the repository url of ``_config.yml``. Then add the chapter to
``_toc.yml`` (only chapters that exist are listed there).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "book" / "_template.ipynb"
NAME_RE = re.compile(r"^\d\d_[a-z0-9_]+$")
TEMPLATE_NOTE = "> **Template note**"  # the template's first cell ends with a note about itself


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``."""
    import yaml

    url = (yaml.safe_load(config.read_text()) or {}).get("repository", {}).get("url")
    if not url:
        raise ValueError(f"{config}: no repository.url")
    return url


def new_chapter(name: str, title: str, book_dir: Path = ROOT / "book", template: Path = TEMPLATE) -> Path:
    """Write ``book_dir/<name>.ipynb`` from the template; refuse to overwrite."""
    if not NAME_RE.match(name):
        raise ValueError(f"chapter name {name!r} must look like '04_mtlnet' (two digits, underscore, lower case)")
    out = book_dir / f"{name}.ipynb"
    if out.exists():
        raise FileExistsError(f"{out} exists; not overwritten")
    notebook = nbformat.read(template, as_version=4)
    for cell in notebook.cells:
        cell.source = cell.source.replace("{{TITLE}}", title).replace("{{CHAPTER}}", name)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # the template's note about itself is not part of a chapter
    first = notebook.cells[0]
    first.source = first.source.split(TEMPLATE_NOTE)[0].rstrip() + "\n"
    nbformat.validate(notebook)
    nbformat.write(notebook, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="file name without .ipynb, e.g. 04_mtlnet")
    p.add_argument("title", help="chapter title")
    args = p.parse_args(argv)
    url = repository_url()
    setup_src = next(c.source for c in nbformat.read(TEMPLATE, as_version=4).cells if c.cell_type == "code")
    if url not in setup_src:
        print(f"error: the template's set-up cell does not use repository.url {url} of _config.yml", file=sys.stderr)
        return 2
    try:
        out = new_chapter(args.name, args.title)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out.relative_to(ROOT)}; add '- file: book/{args.name}' to _toc.yml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
