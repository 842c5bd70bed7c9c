"""Check the built book for MyST text that did not render: run after ``jupyter-book build .``.

    .venv/bin/python tools/check_html.py _build/html

Every page's visible text (scripts and styles removed) must hold no raw MyST role or directive:
``{glue``, ``{cite``, ``{ref}``, ``{numref}``, ``{doc}``, a ``:::`` fence or a ```` ```{ ```` fence.
Those show up when a chapter's markdown (or a markdown output) uses syntax that only some renderers
parse; the chapters are written in portable markdown (tests/test_portable.py).

It also checks what a reader sees in tables and figures:

- no table cell reads ``nan``, ``NaN``, ``n/a``, ``None`` or ``<NA>`` (a missing number shows as ``–``);
- no table cell ends in ``...`` (pandas' truncation);
- every ``<img>`` has alt text that describes it: not empty, not a file name or hash.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

RAW = ("{glue", "{cite", "{ref}", "{numref}", "{doc}", ":::", "```{", "{download}", "{math}", "{eval")
CELL = re.compile(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", re.S | re.I)
IMG = re.compile(r"<img\b[^>]*>", re.I)
ALT = re.compile(r"""\balt\s*=\s*("([^"]*)"|'([^']*)')""", re.I)
# what pandas and Python print for a missing value (case matters: "none" is a word, e.g. normalisation: none)
NOT_A_NUMBER = {"nan", "NaN", "n/a", "N/A", "None", "<NA>", "NaT", "null"}
# a file name or a bare hash: 'a1b2c3d4e5f6...png', '_images/abc.svg', '5f2b9c0d8e'
FILE_LIKE = re.compile(r"^\S*\.(png|jpe?g|svg|gif|webp)$|^[0-9a-f]{8,}$|^\S*/\S*$", re.I)
HIDDEN = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
TAG = re.compile(r"<[^>]+>")


def visible_text(page_html: str) -> str:
    """The text a reader sees: tags, scripts and styles removed, entities decoded."""
    return html.unescape(TAG.sub(" ", HIDDEN.sub(" ", page_html)))


def raw_markup(page: Path) -> list[str]:
    """Raw role / directive snippets left in ``page`` (empty list = clean)."""
    text = visible_text(page.read_text(errors="replace"))
    found = []
    for needle in RAW:
        for m in re.finditer(re.escape(needle), text):
            found.append(" ".join(text[max(0, m.start() - 40): m.end() + 40].split()))
    return found


def table_problems(page: Path) -> list[str]:
    """Table cells that read like a missing number or a truncated text (empty list = clean)."""
    found = []
    for m in CELL.finditer(HIDDEN.sub(" ", page.read_text(errors="replace"))):
        cell = " ".join(visible_text(m.group(1)).split())
        if cell in NOT_A_NUMBER:
            found.append(f"table cell reads {cell!r} where a number belongs (show a missing value as '–')")
        elif cell.endswith(("...", "…")) and len(cell) > 3:
            found.append(f"table cell is cut: {cell[-60:]!r}")
    return found


def image_problems(page: Path) -> list[str]:
    """``<img>`` tags without a describing alt text (empty list = clean)."""
    found = []
    for tag in IMG.findall(page.read_text(errors="replace")):
        m = ALT.search(tag)
        alt = (m.group(2) if m and m.group(2) is not None else m.group(3) if m else "") or ""
        alt = alt.strip()
        src = re.search(r"\bsrc\s*=\s*[\"']([^\"']{0,80})", tag)
        where = src.group(1) if src else tag[:80]
        if not alt:
            found.append(f"image without alt text: {where}")
        elif FILE_LIKE.match(alt) or (src and alt in src.group(1)):
            found.append(f"image alt text is a file name, not a description: {alt!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html_dir", type=Path, help="the built HTML folder, e.g. _build/html")
    args = p.parse_args(argv)
    if not args.html_dir.is_dir():
        print(f"error: {args.html_dir} is not a folder (build the book first)", file=sys.stderr)
        return 2
    pages = sorted(p for p in args.html_dir.rglob("*.html") if "_static" not in p.parts)
    problems = [f"{page}: raw markup: ...{snippet}..." for page in pages for snippet in raw_markup(page)]
    problems += [f"{page}: {msg}" for page in pages for msg in table_problems(page) + image_problems(page)]
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    print(f"{len(pages)} page(s) checked for raw MyST markup, table cells and image alt text, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
