"""The references page from references.bib, and a check that every citation in the chapters has an entry.

    .venv/bin/python tools/references.py           # write book/references.md from references.bib
    .venv/bin/python tools/references.py --check   # exit 1: page out of date, or a citation without entry

``references.bib`` (repository root) is the one source. Each entry gets a label as the chapters cite
it: ``Holm (1979)``, ``Nadeau and Bengio (2003)``, ``Vu et al. (2025)``; works whose labels would be
the same get ``a``, ``b``, ... in title order (``Banos et al. (2014a)``, ``Banos et al. (2014b)``).

Chapters cite in portable markdown (no MyST roles, see tests/test_portable.py) as a link to the page,
``[Vu et al., 2025](references.md)`` or ``[Lee et al. (2022)](references.md)``. ``--check`` reads
every markdown cell, markdown output and prose-cell source of ``book/*.ipynb`` and reports, one line
each, a linked citation whose label has no entry and an unlinked author-year mention (``X et al.,
2020``, ``X and Y (2003)``, ``X, 1979``) that names no entry.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import nbformat
from pybtex.database import parse_file  # installed with jupyter-book (sphinxcontrib-bibtex)

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "references.bib"
PAGE = ROOT / "book" / "references.md"

HEADER = """# References

Every work cited in the chapters, by first author and year (chapters cite them as, e.g.,
[Vu et al., 2025](references.md)). The BibTeX source is `references.bib` at the repository root;
this page is generated from it by `tools/references.py` (edit the .bib file, then run the tool).
"""

# LaTeX accents used in the .bib file -> Unicode combining marks
_ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303", "c": "\u0327", "v": "\u030c"}
_ACCENT = re.compile(r"\{?\\([`'\"^~cv])\s*\{?([A-Za-z])\}?\}?")
# a citation's text: "Vu et al., 2025", "Lee et al. (2022)", "Holm, 1979", "Nadeau and Bengio (2003)", "Banos et al., 2014a"
_CITE_TEXT = re.compile(r"^\s*(?P<who>.+?)(?:,\s*|\s+\()(?P<year>(?:1[89]|20)\d\d[a-z]?)\)?\s*$")
_LINK = re.compile(r"\[([^\]]+)\]\(((?:\.\./book/)?references\.md[^)]*)\)")
# an author-year mention anywhere in prose (a link's text included)
_MENTION = re.compile(r"(?<![\w\[])(?P<who>[A-Z][\w'’-]+(?: et al\.| and [A-Z][\w'’-]+)?)(?:,\s|\s\()"
                      r"(?P<year>(?:1[89]|20)\d\d[a-z]?)(?=[),;.\]]|\s*$)")


def latex_to_text(s: str) -> str:
    """Braces and accent commands of a .bib field as plain text (math such as ``$\\pm$`` is kept)."""
    s = _ACCENT.sub(lambda m: m.group(2) + _ACCENTS[m.group(1)], s)
    s = re.sub(r"(?<!\\)[{}]", "", s)
    return unicodedata.normalize("NFC", " ".join(s.split()))


@dataclass
class Entry:
    key: str
    label: str  # "Vu et al. (2025)"
    text: str  # the page's line, without the label


def _surname(person) -> str:
    return latex_to_text(" ".join(person.prelast_names + person.last_names))


def _full_name(person) -> str:
    return latex_to_text(" ".join(person.first_names + person.middle_names + person.prelast_names + person.last_names))


def _base_label(authors: list, year: str) -> str:
    if len(authors) == 1:
        who = _surname(authors[0])
    elif len(authors) == 2:
        who = f"{_surname(authors[0])} and {_surname(authors[1])}"
    else:
        who = f"{_surname(authors[0])} et al."
    return f"{who} ({year})"


def _body(entry) -> str:
    f = {k.lower(): latex_to_text(v) for k, v in entry.fields.items()}
    parts = [", ".join(_full_name(p) for p in entry.persons.get("author", [])), f"*{f['title']}*"]
    kind = entry.type.lower()
    if kind == "article":
        venue = f.get("journal", "")
        if f.get("volume"):
            venue += f" {f['volume']}" + (f"({f['number']})" if f.get("number") else "")
        parts.append(venue)
    elif kind == "inproceedings":
        parts += [f.get("booktitle", ""), f.get("publisher", "")]
    else:
        if f.get("eprint") and f.get("archiveprefix", "").lower() == "arxiv":
            parts.append(f"arXiv:{f['eprint']}")
        parts.append(f.get("howpublished", ""))
    if f.get("pages"):
        parts.append(f"pp. {f['pages'].replace('--', '–')}")
    text = ". ".join(p for p in parts if p)
    text += "" if text.endswith(".") else "."  # "Analog Devices, Inc."
    link = f.get("url") or (f"https://doi.org/{f['doi']}" if f.get("doi") else "")
    if link:
        text += f" <{link}>"
    if f.get("note"):
        text += f" {f['note'].rstrip('.')}."
    return text


def entries(bib: Path = BIB) -> list[Entry]:
    """The .bib file's entries with their labels, in the page's order (label, then title)."""
    db = parse_file(str(bib))
    rows = []
    for key, e in db.entries.items():
        base = _base_label(list(e.persons.get("author", [])), e.fields["year"])
        rows.append((base, latex_to_text(e.fields["title"]).lower(), key, e))
    rows.sort(key=lambda r: (r[0].lower(), r[1]))
    out = []
    for base, _, key, e in rows:
        same = [r for r in rows if r[0] == base]
        label = base
        if len(same) > 1:  # same authors and year: a, b, ... in title order
            suffix = "abcdefghijklmnopqrstuvwxyz"[[r[2] for r in same].index(key)]
            label = base[:-1] + suffix + ")"
        out.append(Entry(key, label, _body(e)))
    return out


def page_text(bib: Path = BIB) -> str:
    """book/references.md as generated from ``bib``."""
    return HEADER + "\n" + "".join(f"- **{e.label}.** {e.text}\n" for e in entries(bib))


def cite_label(text: str) -> str | None:
    """The label a citation's text names (``"Vu et al., 2025"`` -> ``"Vu et al. (2025)"``), or None
    when the text is not an author-year citation (``[the references](references.md)``)."""
    m = _CITE_TEXT.match(" ".join(text.split()))
    return f"{m.group('who').strip()} ({m.group('year')})" if m else None


def citation_problems(text: str, labels: set[str]) -> list[str]:
    """Citations in markdown ``text`` that name no label of ``labels`` (one message each)."""
    problems = []
    for m in _LINK.finditer(text):
        label = cite_label(m.group(1))
        if label is not None and label not in labels:
            problems.append(f"[{m.group(1)}]({m.group(2)}): no entry {label!r} in references.bib")
    linked = {m.span(1) for m in _LINK.finditer(text)}
    for m in _MENTION.finditer(text):
        if any(a <= m.start() < b for a, b in linked):
            continue  # checked above as a link
        who, year = m.group("who"), m.group("year")
        if f"{who} ({year})" in labels or any(lab.endswith(f" {who} ({year})") for lab in labels):
            continue  # "Analog Devices, 2009": the label's author has several words
        problems.append(f"{who}, {year}: no entry {who + ' (' + year + ')'!r} in references.bib")
    return problems


def notebook_texts(notebook) -> list[tuple[str, str]]:
    """(where, markdown) of every markdown cell, markdown output, and prose-cell source (``say(...)``)."""
    out = []
    for i, cell in enumerate(notebook.cells):
        where = f"cell {i} ({cell.get('id', '?')})"
        if cell.cell_type == "markdown":
            out.append((where, cell.source))
        elif cell.cell_type == "code":
            if cell.source.lstrip().startswith("say("):
                out.append((f"{where} source", cell.source))
            else:
                for o in cell.get("outputs", []):
                    md = o.get("data", {}).get("text/markdown")
                    if md:
                        out.append((f"{where} output", md if isinstance(md, str) else "".join(md)))
    return out


def check_citations(paths: list[Path], labels: set[str]) -> list[str]:
    return [f"{p}: {where}: {problem}" for p in paths
            for where, text in notebook_texts(nbformat.read(p, as_version=4))
            for problem in citation_problems(text, labels)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if book/references.md is out of date or a citation has no entry")
    args = p.parse_args(argv)
    text = page_text()
    labels = {e.label for e in entries()}
    problems = check_citations(sorted((ROOT / "book").glob("*.ipynb")), labels)
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            problems.insert(0, f"{PAGE}: out of date with {BIB.name}; run tools/references.py")
    else:
        PAGE.write_text(text)
        print(f"wrote {PAGE} ({len(labels)} entries)", file=sys.stderr)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
