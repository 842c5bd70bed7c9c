"""Check the built book for MyST text that did not render: run after ``jupyter-book build .``.

    .venv/bin/python tools/check_html.py _build/html

Every page's visible text (scripts and styles removed) must hold no raw MyST role or directive:
``{glue``, ``{cite``, ``{ref}``, ``{numref}``, ``{doc}``, a ``:::`` fence or a ```` ```{ ```` fence.
Those show up when a chapter's markdown (or a markdown output) uses syntax that only some renderers
parse; the chapters are written in portable markdown (tests/test_portable.py).
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

RAW = ("{glue", "{cite", "{ref}", "{numref}", "{doc}", ":::", "```{")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html_dir", type=Path, help="the built HTML folder, e.g. _build/html")
    args = p.parse_args(argv)
    if not args.html_dir.is_dir():
        print(f"error: {args.html_dir} is not a folder (build the book first)", file=sys.stderr)
        return 2
    pages = sorted(p for p in args.html_dir.rglob("*.html") if "_static" not in p.parts)
    problems = [f"{page}: raw markup: ...{snippet}..." for page in pages for snippet in raw_markup(page)]
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    print(f"{len(pages)} page(s) checked for raw MyST markup, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
