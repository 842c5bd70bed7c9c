"""Check the built book for MyST text that did not render: run after ``jupyter-book build .``.

    .venv/bin/python tools/check_html.py _build/html

Every page's visible text (scripts and styles removed) must hold no raw MyST role or directive:
``{glue``, ``{cite``, ``{ref}``, ``{numref}``, ``{doc}``, a ``:::`` fence or a ```` ```{ ```` fence.
Those show up when a chapter's markdown (or a markdown output) uses syntax that only some renderers
parse; the chapters are written in portable markdown (tests/test_portable.py).

It also checks what a reader sees in tables and figures:

- no table cell reads ``nan``, ``NaN``, ``n/a``, ``None`` or ``<NA>`` (a missing number shows as ``–``);
- no table cell ends in ``...`` (pandas' truncation);
- every ``<img>`` has alt text that describes it: not empty, not a file name or hash;
- every table fits the content column (:data:`COLUMN_PX`, the column of a 1280 px wide window),
  by the estimate below; one line per table that does not: page, table index, estimated width.

**The width estimate** (from the HTML alone, no browser; :func:`table_width`). A table is laid out
as the book's CSS (``book/_css/book.css``) lays it out, and the estimate mirrors that file:

- font: tables of computed outputs (pandas' ``table.dataframe``, Styler tables ``table#T_*``) are
  set at 13.6 px, 12 px from 8 cells in a row, 11 px from 11 (:data:`OUTPUT_FONT_PX`); markdown
  tables in prose at the text's 16 px (:data:`PROSE_FONT_PX`);
- characters: the advance widths of DejaVu Sans (:data:`EM`, in ems; the sans-serif that Linux
  browsers fall back to, wider than Segoe UI, San Francisco or Helvetica, so a table that fits
  here fits there too), header cells bold (:data:`BOLD`);
- wrapping: a header or, in an output table, a row's label (its first cell) may wrap onto at
  most 3 lines, any other cell onto 8 (:data:`MAX_LINES`, :data:`TEXT_LINES`: a label on four
  lines or a sentence squeezed into a word per line does not count as fitting); lines break at
  spaces, after a hyphen and at a ``<wbr>`` (which ``report.to_html`` puts into long names and
  URLs, and into every header after ``_``, ``/`` and ``+``: the readable places), never inside a
  word (book.css: ``overflow-wrap: break-word``, so a word counts whole in a column's narrowest
  width); a no-break space (U+00A0, which ``report.to_html`` puts inside numbers such as
  ``93.1 ± 0.4`` and short row labels) never breaks;
- each column is as wide as its widest cell so wrapped, plus padding and a border (with the
  font sizes above); a cell spanning columns widens them only where it is wider than they are
  together.

Calibrated against Chromium 156's rendering of the built book (DejaVu Sans, the same CSS with
unlimited lines per cell and headers breaking where body cells do; the narrowest width of each of
the book's 90 tables, ``width: min-content``): the estimate's median is 1.007 times the measured
width, from 0.974 to 1.11 times, mean error 1.7 %. Chromium was only the yardstick: the check needs
no browser.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from html.parser import HTMLParser
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


#: the content column of the built book at a 1280 px wide window (pydata/sphinx-book theme: 688 px,
#: less a margin for a scrollbar): a table wider than this runs off the column
COLUMN_PX = 676
#: output tables by the largest number of cells in a row (the last entry whose count is reached):
#: font size and horizontal padding + the 1 px border of one cell + 1 px of rounding, in px
#: (mirrors book/_css/book.css: 13.6 px type and 4 px padding each side; 12 px from 8 cells; 11 px
#: and 3 px from 11 cells)
OUTPUT_FONT_PX = ((1, 13.6, 10.0), (8, 12.0, 10.0), (11, 11.0, 8.0))
#: markdown tables in prose: the theme's 16 px text and 8 px padding each side
PROSE_FONT_PX, PROSE_PAD_PX = 16.0, 17.0
#: the most lines a header or a row's label (its first cell) may wrap onto, and any other cell
MAX_LINES, TEXT_LINES = 3, 8
BOLD = 1.12  # DejaVu Sans Bold is 9-13 % wider than the regular face
#: advance widths of DejaVu Sans in ems, by kind of character (the regular face)
EM = {"digit": 0.636, "lower": 0.59, "upper": 0.68, "space": 0.318, "narrow": 0.32, "wide": 0.84, "other": 0.6}
_NARROW = set(".,:;'!|()[]{}ijlft/\\`")
_WIDE = set("%mwMW±+×−≥≤=<>~#@&") | {"\u2013", "\u2014"}
# where a line may break (as Chromium breaks): after whitespace, after a hyphen inside a word or
# number ("core-hours", "2026-11-22") and at a <wbr> (read as U+200B), in headers as in body cells
_SPLIT = re.compile(r"[^ \t\n\r\f\u200b]+?(?:-(?=[^\s\u200b])|(?=[ \t\n\r\f\u200b])|$)")


def char_em(c: str) -> float:
    """Advance width of ``c`` in ems (DejaVu Sans, regular)."""
    if c.isdigit():
        return EM["digit"]
    if c in (" ", "\u00a0"):
        return EM["space"]
    if c in _NARROW:
        return EM["narrow"]
    if c in _WIDE:
        return EM["wide"]
    if c.islower():
        return EM["lower"]
    if c.isupper():
        return EM["upper"]
    return EM["other"]


def text_px(text: str, font_px: float, bold: bool = False) -> float:
    """Estimated width of ``text`` on one line."""
    return sum(char_em(c) for c in text) * font_px * (BOLD if bold else 1.0)


def wrapped_px(text: str, font_px: float, header: bool = False, max_lines: int = MAX_LINES) -> float:
    """The narrowest width at which ``text`` wraps onto at most ``max_lines`` lines, filling lines
    as a browser does and breaking only where :data:`_SPLIT` allows (``header``: bold)."""
    pieces = [(m.group(0).replace("\u200b", ""), m.start() > 0 and text[m.start() - 1] in " \t\n\r\f")
              for m in _SPLIT.finditer(text)]
    if not pieces:
        return 0.0
    widths = [text_px(p, font_px, header) for p, _ in pieces]
    space = text_px(" ", font_px, header)

    def lines(width: float) -> int:
        n, line = 1, 0.0
        for w, (_, after_space) in zip(widths, pieces):
            add = w + (space if line and after_space else 0.0)
            if line and line + add > width + 1e-6:
                n, line = n + 1, w
            else:
                line += add
        return n

    lo, hi = max(widths), sum(widths) + space * len(widths)
    if lines(lo) <= max_lines:
        return lo
    for _ in range(30):  # bisection to a small fraction of a pixel
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if lines(mid) <= max_lines else (mid, hi)
    return hi


class _Tables(HTMLParser):
    """Every ``<table>`` of a page: attributes and rows of cells ``(tag, text, colspan, rowspan)``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._stack: list[dict] = []
        self._cell: list | None = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self._stack.append({"attrs": a, "rows": []})
        elif self._stack and tag == "tr":
            self._stack[-1]["rows"].append([])
        elif self._stack and tag in ("td", "th") and self._stack[-1]["rows"]:
            self._cell = [tag, "", _int(a.get("colspan")), _int(a.get("rowspan"))]
            self._stack[-1]["rows"][-1].append(self._cell)
        elif self._cell is not None and tag == "br":
            self._cell[1] += "\n"
        elif self._cell is not None and tag == "wbr":
            self._cell[1] += "\u200b"

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        if self._cell is not None and not self._skip:
            self._cell[1] += data


def _int(v) -> int:
    try:
        return max(1, int(v))
    except (TypeError, ValueError):
        return 1


def tables_of(page_html: str) -> list[dict]:
    """The page's tables, in document order (outer after inner for nested ones)."""
    parser = _Tables()
    parser.feed(page_html)
    return parser.tables


def _is_output_table(table: dict) -> bool:
    classes = table["attrs"].get("class", "") or ""
    return "dataframe" in classes.split() or (table["attrs"].get("id") or "").startswith("T_")


def table_font_px(table: dict) -> tuple[float, float]:
    """(font size, padding + border per cell) in px that the book's CSS gives ``table``
    (see :data:`OUTPUT_FONT_PX`)."""
    if not _is_output_table(table):
        return PROSE_FONT_PX, PROSE_PAD_PX
    cells = max((len(r) for r in table["rows"]), default=0)
    return next((px, pad) for n, px, pad in reversed(OUTPUT_FONT_PX) if cells >= n)


def table_width(table: dict, max_lines: int = MAX_LINES, text_lines: int = TEXT_LINES) -> float:
    """Estimated width (px) of ``table`` as the book lays it out (see the module doc): headers and,
    in output tables, each row's first cell (its label) wrap onto at most ``max_lines`` lines, other
    cells onto at most ``text_lines``."""
    font, pad = table_font_px(table)
    output = _is_output_table(table)
    placed: list[tuple[int, int, float]] = []  # (first column, span, width)
    taken: dict[tuple[int, int], bool] = {}  # (row, column) covered by a rowspan from above
    for r, row in enumerate(table["rows"]):
        c = 0
        for k, (tag, text, colspan, rowspan) in enumerate(row):
            while taken.get((r, c)):
                c += 1
            label = tag == "th" or (k == 0 and output)  # a prose table's first column is text
            width = wrapped_px(text.strip(), font, tag == "th", max_lines if label else text_lines)
            placed.append((c, colspan, width + pad))
            for dr in range(rowspan):
                for dc in range(colspan):
                    taken[(r + dr, c + dc)] = True
            c += colspan
    n = max((c + span for c, span, _ in placed), default=0)
    cols = [0.0] * n
    for c, span, w in placed:
        if span == 1:
            cols[c] = max(cols[c], w)
    for c, span, w in sorted((p for p in placed if p[1] > 1), key=lambda p: p[1]):
        have = sum(cols[c:c + span])
        if w > have:  # widen the spanned columns evenly by what is missing
            for k in range(c, c + span):
                cols[k] += (w - have) / span
    return sum(cols) + 1.0  # the table's outer border


def wide_tables(page: Path, limit: float = COLUMN_PX) -> list[str]:
    """One line per table of ``page`` estimated wider than ``limit`` px (empty list = all fit)."""
    found = []
    for i, table in enumerate(tables_of(page.read_text(errors="replace"))):
        w = table_width(table)
        if w > limit:
            head = " | ".join(" ".join(t.split()) for _, t, _, _ in (table["rows"] or [[]])[0])[:60]
            found.append(f"table {i} is about {math.ceil(w)} px wide, wider than the {limit:.0f} px column "
                         f"(first row: {head!r})")
    return found


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
    problems += [f"{page}: {msg}" for page in pages for msg in wide_tables(page)]
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    print(f"{len(pages)} page(s) checked for raw MyST markup, table cells, table widths and image alt text, "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
