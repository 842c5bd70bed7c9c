"""The chapters read right wherever they are opened: the HTML book, JupyterLab, Colab, plain CommonMark.

Every chapter's markdown (its markdown cells and the markdown outputs of its prose cells) holds no
MyST-only syntax (roles, directive fences, colon fences, targets) and renders through markdown-it-py's
``commonmark`` preset with no role or directive text left; solutions are ``<details>`` blocks that
CommonMark parses inside; relative links point at files that exist. The built HTML is checked by
``tools/check_html.py`` (tested here on small pages).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from smoothdistill_lib import report

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = [*CHAPTERS, BOOK / "_template.ipynb", BOOK / "instructor_guide.ipynb", *sorted((ROOT / "student").glob("*.ipynb"))]
sys.path.insert(0, str(ROOT / "tools"))

import check_html  # noqa: E402

MYST_ONLY = {
    "role": re.compile(r"\{[A-Za-z][\w:.+-]*\}`"),
    "directive fence": re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*\{", re.M),
    "colon fence": re.compile(r"^[ \t]*:{3,}", re.M),
    "target": re.compile(r"^[ \t]*\([^)\s]+\)=[ \t]*$", re.M),
}
LEFT_OVER = ("{glue", "{cite", "{ref}", "{numref}", "{doc}", "{admonition}", "{note}", ":::", "```{")
COMMONMARK = MarkdownIt("commonmark")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def myst_only(text: str) -> list[str]:
    """The MyST-only constructs in ``text`` (empty list = portable)."""
    return [f"{kind}: {m.group(0).strip()!r}" for kind, rx in MYST_ONLY.items() for m in rx.finditer(text)]


def rendered_leftovers(text: str) -> list[str]:
    """Role or directive text still visible after a plain CommonMark rendering of ``text``."""
    html = COMMONMARK.render(text)
    visible = check_html.visible_text(html)
    return [needle for needle in LEFT_OVER if needle in visible]


def details_problems(text: str) -> list[str]:
    """``<details>`` blocks must be closed, collapsed, titled, and have blank lines around their body."""
    problems = []
    lines = text.split("\n")
    opened = [i for i, line in enumerate(lines) if line.strip().startswith("<details")]
    closed = [i for i, line in enumerate(lines) if line.strip() == "</details>"]
    if len(opened) != len(closed):
        problems.append(f"{len(opened)} <details> but {len(closed)} </details>")
    for i in opened:
        if lines[i].strip() != "<details>":
            problems.append(f"line {i + 1}: {lines[i].strip()!r} (a solution starts collapsed: plain <details>)")
        if i + 2 >= len(lines) or not lines[i + 1].strip().startswith("<summary>") or lines[i + 2].strip():
            problems.append(f"line {i + 1}: <details> needs a <summary> line, then a blank line")
    for i in closed:
        if i == 0 or lines[i - 1].strip():
            problems.append(f"line {i + 1}: a blank line must come before </details>")
    return problems


def markdown_texts(notebook) -> list[tuple[str, str]]:
    """(where, text) of every markdown cell and every text/markdown output of a code cell."""
    out = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            out.append((f"cell {i}", cell.source))
        elif cell.cell_type == "code":
            for o in cell.get("outputs", []):
                md = o.get("data", {}).get("text/markdown")
                if md:
                    out.append((f"cell {i} output", md if isinstance(md, str) else "".join(md)))
    return out


# ---- the checks themselves can fail ---------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "a fold has {glue:text}`steps:,d` steps", "as shown {cite:p}`vu2025smoothdistill`", "see {ref}`x`",
    ":::{admonition} Solution\n:class: dropdown\nx\n:::", "```{note}\nx\n```", "(results-pvalues)=\n## Table 8",
])
def test_checks_catch_myst_only_syntax(bad):
    assert myst_only(bad)
    if "```" not in bad and ")=" not in bad:  # a directive fence renders as a code block; a target as text
        assert rendered_leftovers(bad)


def test_checks_accept_portable_markdown():
    good = ("A fold has **1,234** steps, $a^{10}$ is tiny; see [chapter 5](05_ema_teacher.ipynb) and "
            "[Vu et al., 2025](references.md).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<details>\n<summary>Solution</summary>\n\n"
            "```python\nprint(f\"{x}\")\n```\n\n</details>\n")
    assert myst_only(good) == [] and rendered_leftovers(good) == [] and details_problems(good) == []
    assert details_problems("<details>\n<summary>S</summary>\nno blank line\n</details>")
    assert details_problems("<details open>\n<summary>S</summary>\n\nx\n\n</details>")
    assert details_problems("<details>\n<summary>S</summary>\n\nx\n")


# ---- every chapter ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_markdown_is_portable(path):
    notebook = nbformat.read(path, as_version=4)
    problems = []
    for where, text in markdown_texts(notebook):
        problems += [f"{where}: {p}" for p in myst_only(text) + rendered_leftovers(text) + details_problems(text)]
        for target in LINK.findall(text):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            if not (path.parent / target.split("#")[0]).exists():
                problems.append(f"{where}: link to {target}, which does not exist in book/")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_prose_cells_are_hidden_in_the_html_and_have_their_output(path):
    notebook = nbformat.read(path, as_version=4)
    prose = [c for c in notebook.cells if c.cell_type == "code" and c.source.lstrip().startswith("say(")]
    for cell in prose:
        assert "remove-input" in cell.metadata.get("tags", []), f"prose cell without remove-input: {cell.source[:60]!r}"
        assert any("text/markdown" in o.get("data", {}) for o in cell.outputs), \
            f"prose cell without its markdown output (execute the chapter): {cell.source[:60]!r}"
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any("application/papermill.record/text/plain" in o.get("data", {}) for o in outputs), \
        "glue records left: numbers in prose come from say(...) cells"


@pytest.mark.parametrize("path", [*CHAPTERS, BOOK / "intro.ipynb", BOOK / "instructor_guide.ipynb"], ids=lambda p: p.stem)
def test_every_figure_has_alt_text(path):
    """A cell whose stored outputs hold an image names what it shows (``mystnb.image.alt``): the built
    page's <img> gets it, and tools/check_html.py would otherwise fail the build check."""
    notebook = nbformat.read(path, as_version=4)
    missing = [c.get("id") for c in notebook.cells if c.cell_type == "code"
               and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
               and "remove-output" not in c.metadata.get("tags", []) and "remove-cell" not in c.metadata.get("tags", [])
               and len(c.metadata.get("mystnb", {}).get("image", {}).get("alt", "").split()) < 4]
    assert not missing, f"figures without alt text (cell metadata mystnb.image.alt) in cells {missing}"


def test_solutions_are_collapsed_details():
    solutions = 0
    for path in CHAPTERS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                solutions += cell.source.count("<summary>Solution</summary>")
    assert solutions >= len(CHAPTERS)  # every chapter has exercises with solutions


# ---- the built HTML (tools/check_html.py) ----------------------------------------------------------

def test_html_check_flags_raw_roles(tmp_path):
    (tmp_path / "good.html").write_text("<p>A fold has 1,234 steps</p><script>var a = '{glue';</script>")
    (tmp_path / "bad.html").write_text("<p>a fold has {glue:text}<code>steps</code> steps</p><p>:::{admonition}</p>")
    assert check_html.raw_markup(tmp_path / "good.html") == []
    assert len(check_html.raw_markup(tmp_path / "bad.html")) == 2
    assert check_html.main([str(tmp_path)]) == 1
    (tmp_path / "bad.html").unlink()
    assert check_html.main([str(tmp_path)]) == 0
    assert check_html.main([str(tmp_path / "missing")]) == 2


def test_html_check_flags_missing_numbers_cut_cells_and_bad_alt_text(tmp_path):
    good = ("<table><tr><th>method</th><th>p</th></tr><tr><td>multitask</td><td>–</td></tr>"
            "<tr><td>Smooth-Distill ... and more</td><td>0.25</td><td>none</td></tr></table>"
            '<img src="_images/1f2e3d4c5b6a7980.png" alt="Test accuracy of five methods with 95 % intervals">')
    (tmp_path / "good.html").write_text(good)
    assert check_html.table_problems(tmp_path / "good.html") == []
    assert check_html.image_problems(tmp_path / "good.html") == []
    bad = ("<table><tr><td>nan</td><td> N/A </td><td>None</td><td>two independent single-head nets, plain CE eac...</td>"
           "<td>1.5</td></tr></table>"
           '<img src="_images/1f2e3d4c5b6a7980.png" alt="1f2e3d4c5b6a7980.png"><img src="a.png">'
           "<img src='b.png' alt=''><img src=\"c.png\" alt=\"9d5aa88c0ffee123\">")
    (tmp_path / "bad.html").write_text(bad)
    assert len(check_html.table_problems(tmp_path / "bad.html")) == 4
    problems = check_html.image_problems(tmp_path / "bad.html")
    assert len(problems) == 4 and sum("without alt" in p for p in problems) == 2
    assert check_html.main([str(tmp_path)]) == 1
    (tmp_path / "bad.html").unlink()
    assert check_html.main([str(tmp_path)]) == 0


# ---- tables fit the content column (tools/check_html.py: table_width, wide_tables) -------------------

def _frame_html(columns: list[str], rows: list[list[str]], index_name: str = "method") -> str:
    head = "".join(f"<th>{c}</th>" for c in [index_name, *columns])
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div><table class="dataframe sd-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def test_width_check_fails_a_wide_table_and_passes_a_narrow_one(tmp_path):
    narrow = _frame_html(["task 1 test accuracy (%)", "task 2 test accuracy (%)", "n"],
                         [["smooth_distill", "93.1 ± 0.4", "88.0 ± 1.2", "3"], ["multitask", "92.0 ± 0.5", "87.1 ± 0.9", "3"]])
    # 19 columns of counts (an activity-by-split table shown transposed): about 1,000 px even at 11 px
    wide = _frame_html([f"activity_<wbr>{k}" for k in range(18)] + ["total"],  # as report.to_html writes them
                       [["train", *["3,005"] * 18, "54,236"], ["test", *["755"] * 18, "13,560"]], index_name="")
    (tmp_path / "page.html").write_text(f"<p>text</p>{narrow}<p>more</p>{wide}")
    found = check_html.wide_tables(tmp_path / "page.html")
    assert len(found) == 1 and found[0].startswith("table 1 is about ") and "wider than the 676 px column" in found[0]
    assert 900 < int(found[0].split("about ")[1].split(" px")[0]) < 1300
    assert check_html.main([str(tmp_path)]) == 1
    (tmp_path / "page.html").write_text(narrow)
    assert check_html.wide_tables(tmp_path / "page.html") == [] and check_html.main([str(tmp_path)]) == 0


def test_width_estimate_follows_the_book_css():
    table = check_html.tables_of(_frame_html(["a"], [["x", "1"]]))[0]
    assert check_html.table_font_px(table) == (13.6, 10.0)
    many = check_html.tables_of(_frame_html([str(k) for k in range(10)], [["x", *["1"] * 10]]))[0]
    assert check_html.table_font_px(many)[0] == 11.0  # 11 cells in a row
    prose = check_html.tables_of("<table class='table'><tr><th>a</th></tr></table>")[0]
    assert check_html.table_font_px(prose) == (16.0, 17.0)
    # one line per number: a no-break space never breaks, a plain one may
    assert check_html.wrapped_px("93.1\u00a0±\u00a00.4", 13.6) == pytest.approx(check_html.text_px("93.1 ± 0.4", 13.6))
    assert check_html.wrapped_px("93.1 ± 0.4", 13.6) < check_html.text_px("93.1 ± 0.4", 13.6)
    # headers and body cells wrap at spaces, hyphens and <wbr> (report.to_html puts one after each "_" of
    # a header), never inside a word (book.css: overflow-wrap: break-word)
    hinted = "same_\u200bmoment_\u200bother_\u200bplacement"
    assert check_html.wrapped_px(hinted, 13.6, header=True) < \
        0.5 * check_html.text_px("same_moment_other_placement", 13.6, bold=True)
    assert check_html.wrapped_px("same_moment_other_placement", 13.6, header=True) == \
        pytest.approx(check_html.text_px("same_moment_other_placement", 13.6, bold=True))
    assert check_html.wrapped_px("same_moment_other_placement", 13.6) == \
        pytest.approx(check_html.text_px("same_moment_other_placement", 13.6))
    css = (ROOT / "book" / "_css" / "book.css").read_text()
    assert "overflow-wrap: anywhere" not in css and "overflow-wrap: break-word" in css
    url = check_html.tables_of("<table class='dataframe'><tr><td>https://<wbr>archive.<wbr>ics.<wbr>uci.<wbr>edu/<wbr>"
                               "static/<wbr>public/<wbr>507/<wbr>wisdm+<wbr>smartphone.zip</td></tr></table>")[0]
    unbroken = check_html.tables_of("<table class='dataframe'><tr><td>https://archive.ics.uci.edu/static/public/507/"
                                    "wisdm+smartphone.zip</td></tr></table>")[0]
    assert check_html.table_width(url) < 200 < 400 < check_html.table_width(unbroken)  # wraps at its <wbr>s
    # a label wraps onto at most 3 lines, other text onto 8
    label = "a long row label that would otherwise wrap onto many lines"
    assert check_html.wrapped_px(label, 13.6, max_lines=3) > 2 * check_html.wrapped_px(label, 13.6, max_lines=8)


def test_width_estimate_handles_spans():
    # a header spanning two columns widens them only where it is wider than both together
    spans = ("<table class='dataframe'><tr><th colspan='2'>a very long group header over two columns</th></tr>"
             "<tr><td>1</td><td>2</td></tr></table>")
    one_cell = "<table class='dataframe'><tr><th>a very long group header over two columns</th></tr></table>"
    w_span = check_html.table_width(check_html.tables_of(spans)[0])
    w_one = check_html.table_width(check_html.tables_of(one_cell)[0])
    assert w_span == pytest.approx(w_one)
    # a row label spanning two rows (pandas Styler) keeps the cells of the next row in their columns
    styler = ("<table id='T_x'><tr><th rowspan='2'>sleepsim</th><th>paper</th><td>1</td></tr>"
              "<tr><th>subject</th><td>2</td></tr></table>")
    rows = check_html.tables_of(styler)[0]["rows"]
    assert len(rows) == 2 and check_html.table_width(check_html.tables_of(styler)[0]) < 200


def test_the_table_formatter_lays_out_a_wide_p_value_matrix_to_fit():
    """report.to_html's number formats and the CSS tiers together: five methods' p-values with and
    without Holm's correction (11 cells a row: 11 px type, 3 px padding; one format, 0.756 and 1.000)
    fit the column."""
    methods = ["singletask", "multitask", "sd_dropout", "born_again", "smooth_distill"]
    cols = pd.MultiIndex.from_tuples([(g, m) for g in ("paired t-test (the paper's)", "paired t-test + Holm")
                                      for m in methods])
    values = np.full((5, 10), 1.0)  # Holm's adjusted p-values are all 1 here
    p = np.array([0.7559, 0.9183, 0.7938, 0.2587, 0.5432, 0.7072, 0.2827, 0.5736, 0.1820, 0.1407])
    values[:, :5][np.triu_indices(5, 1)] = p
    values[:, :5][np.tril_indices(5, -1)] = values[:, :5].T[np.tril_indices(5, -1)]
    t = pd.DataFrame(values, index=pd.Index(methods, name="method"), columns=cols)
    html = report.to_html(t)
    assert "<td>1.000</td>" in html and "<td>0.756</td>" in html and "<td>1</td>" not in html
    assert check_html.table_width(check_html.tables_of(html)[0]) <= check_html.COLUMN_PX
