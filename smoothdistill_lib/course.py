"""The course kit: the student edition of a chapter, and what the instructor guide reads from chapters.

A chapter (``book/NN_*.ipynb``) is the single source. Its exercises (``smoothdistill_lib.exercises``)
are a stub cell (tag ``exercise-stub``), a solution cell (tag ``solution``) and a self-check cell (tag
``exercise-check``), plus ``<details><summary>Solution</summary> ... </details>`` discussions in
markdown. :func:`student_edition` derives the notebook students get: solutions and their outputs
removed, stubs and checks with cleared outputs, everything else the same; ``tools/make_student_edition.py``
writes it to ``student/`` and ``tests/test_course.py`` fails when ``student/`` is out of date.

Tags are read case-insensitively (``Solution`` and ``solutions`` are the solution tag too: a variant
spelling must never let a solution through), every exercise must have its three cells
(:func:`exercise_groups`, else ``ValueError``), and anything that looks like a solution outside
these markers (a ``# BEGIN SOLUTION`` or ``# Solution`` comment in a code cell, a "Solution" heading
in markdown, a tag that mentions a solution or an answer, an untagged cell whose id says solution)
is refused rather than copied into the student edition.

The instructor guide (``book/instructor_guide.ipynb``) reads each chapter's learning goals
(:func:`learning_goals`), exercises (:func:`exercise_list`), the chapters it links to
(:func:`chapter_links`), whether it has GPU cells (:func:`gpu_cells`), and builds the Colab links of
the student edition from ``_config.yml`` (:func:`colab_url`).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import yaml

__all__ = ["STUDENT_DIR", "SOLUTION_TAG", "STUB_TAG", "CHECK_TAG", "student_edition", "student_text",
           "learning_goals", "exercise_list", "exercise_groups", "role", "session_use", "read_chapter", "prerequisites", "gpu_cells",
           "repository_url", "colab_url", "chapters"]

#: where the student edition lives, beside book/
STUDENT_DIR = "student"
SOLUTION_TAG, STUB_TAG, CHECK_TAG = "solution", "exercise-stub", "exercise-check"

# a markdown solution: <details>, its "Solution" summary, anything, </details> (non-greedy: one block)
_DETAILS = re.compile(r"\n*<details>\s*<summary>\s*Solution\s*</summary>.*?</details>[ \t]*", re.S | re.I)
_NOTE_ID = "student-edition-note"
# a markdown link's target; relative ones other than a chapter are rewritten to point into book/
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CHAPTER_FILE = re.compile(r"\d\d_[\w-]+\.ipynb(#.*)?$")


def _relink(text: str) -> str:
    """Point relative links (``references.md``) at ``../book/``: student notebooks sit in ``student/``,
    beside the student editions of the chapters but not beside the book's other pages."""
    def fix(m: re.Match) -> str:
        target = m.group(1)
        if "://" in target or target.startswith(("#", "mailto:", "../")) or _CHAPTER_FILE.match(target):
            return m.group(0)
        return f"](../book/{target})"
    return _LINK.sub(fix, text)


def chapters(book: Path | str) -> list[Path]:
    """The numbered chapters ``NN_*.ipynb`` of ``book``, in order."""
    return sorted(Path(book).glob("[0-9][0-9]_*.ipynb"))


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


#: the tags of each exercise role, lower case (tags are compared case-insensitively)
_ROLE_TAGS = {"stub": {STUB_TAG}, "solution": {SOLUTION_TAG, SOLUTION_TAG + "s"}, "check": {CHECK_TAG}}
#: a tag that mentions a solution or an answer but is none of the role tags: ambiguous, so refused
_SOLUTION_WORD = re.compile(r"solution|answer", re.I)
# solution-like text outside the known markers: a "# Solution" / "# BEGIN SOLUTION" comment line in a
# code cell; a markdown line that is only a "Solution"/"Answer" heading or bold label; HTML marked solution
_SOLUTION_COMMENT = re.compile(r"^\s*#+\s*(?:BEGIN\s+|END\s+)?(?:SOLUTIONS?|ANSWERS?)\b", re.I | re.M)
_SOLUTION_HEADING = re.compile(r"^\s*(?:#{1,6}\s*|\*\*|__)?\s*(?:Solutions?|Answers?)\s*[:.]?\s*(?:\*\*|__)?\s*[:.]?\s*$",
                               re.I | re.M)
_SOLUTION_HTML = re.compile(r"<summary\b|class\s*=\s*[\"'][^\"']*solution", re.I)
_EXERCISE_ID = re.compile(r"^\d\d\.\d+$")


def role(cell) -> str | None:
    """The exercise role of ``cell`` from its tags, case-insensitively: ``"stub"``, ``"solution"``,
    ``"check"`` or None. ``ValueError`` for a cell with two roles or with a tag that mentions a solution
    or an answer without being one of the role tags (``hide-solution``, ``answer``): either would let
    a solution through or drop a stub, so the student edition refuses to guess."""
    tags = {str(t).strip().lower() for t in _tags(cell)}
    roles = [r for r, names in _ROLE_TAGS.items() if tags & names]
    odd = sorted(t for t in tags if _SOLUTION_WORD.search(t) and not any(t in names for names in _ROLE_TAGS.values()))
    where = f"cell {cell.get('id')}"
    if odd:
        raise ValueError(f"{where} has the tag {odd[0]!r}, which mentions a solution but is not one of the "
                         f"exercise tags ({SOLUTION_TAG}, {STUB_TAG}, {CHECK_TAG})")
    if len(roles) > 1:
        raise ValueError(f"{where} is tagged as {' and '.join(roles)} at once")
    return roles[0] if roles else None


def exercise_groups(chapter: nbformat.NotebookNode, source: str = "the chapter") -> dict[str, dict]:
    """The chapter's self-checking exercises: ``{exercise: {"stub": cell, "solution": cell, "check": cell}}``
    in chapter order. ``ValueError`` naming ``source`` and the cell for a malformed exercise: a role
    cell without ``metadata["exercise"]`` (or with an id other than ``NN.K``), a code cell with an
    ``exercise`` but no role, a role missing or given twice, a check before its stub, or a
    non-code role cell."""
    groups: dict[str, dict] = {}
    for cell in chapter.cells:
        r, ex = role(cell), cell.get("metadata", {}).get("exercise")
        where = f"{source}: cell {cell.get('id')}"
        if r is None:
            if ex is not None and cell.get("cell_type") == "code":
                raise ValueError(f"{where} belongs to exercise {ex!r} but has none of the tags {STUB_TAG}, "
                                 f"{SOLUTION_TAG}, {CHECK_TAG}")
            continue
        if cell.get("cell_type") != "code":
            raise ValueError(f"{where} is tagged {r} but is a {cell.get('cell_type')} cell, not code")
        if not isinstance(ex, str) or not _EXERCISE_ID.match(ex):
            raise ValueError(f"{where} is tagged {r} but its metadata 'exercise' is {ex!r}, not an id like '01.1'")
        group = groups.setdefault(ex, {})
        if r in group:
            raise ValueError(f"{where}: exercise {ex} has a second {r} cell")
        if r == "check" and "stub" not in group:
            raise ValueError(f"{where}: the check of exercise {ex} comes before its stub")
        group[r] = cell
    for ex, group in groups.items():
        missing = [r for r in _ROLE_TAGS if r not in group]
        if missing:
            raise ValueError(f"{source}: exercise {ex} has no {' and no '.join(missing)} cell")
    return groups


def _solution_like(cell) -> str | None:
    """Why ``cell`` (already stripped of the known solution markers) looks like a solution, or None."""
    if "solution" in str(cell.get("id", "")).lower():
        return "its id says solution but it is not tagged solution"
    text = cell.get("source", "")
    if cell.get("cell_type") == "code" and _SOLUTION_COMMENT.search(text):
        return f"it has a solution comment ({_SOLUTION_COMMENT.search(text).group(0).strip()!r})"
    if cell.get("cell_type") == "markdown":
        if _SOLUTION_HEADING.search(text):
            return f"it has a solution heading ({_SOLUTION_HEADING.search(text).group(0).strip()!r})"
        if _SOLUTION_HTML.search(text):
            return "it has HTML that marks a solution"
    return None


def student_edition(chapter: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """The student edition of ``chapter`` (a notebook; ``source`` names its file, e.g. ``book/01_preface.ipynb``).

    Removes cells tagged ``solution`` (any case, or ``solutions``) and every markdown ``<details>``
    solution (a markdown cell left empty goes too); clears outputs and execution counts of the stub and
    check cells; adds one note after the title saying what this is. Raises ``ValueError`` (naming
    ``source`` and the cell) for a malformed exercise (:func:`exercise_groups`), if any ``<details>`` is
    left, or for anything else that looks like a solution (:func:`role`, ``_solution_like``): a
    solution that does not follow the convention would otherwise leak.
    """
    exercise_groups(chapter, source)  # malformed exercises are refused before anything is written
    nb = copy.deepcopy(chapter)
    cells = []
    for cell in nb.cells:
        r = role(cell)
        if r == "solution":
            continue
        if cell.cell_type == "markdown":
            text = _DETAILS.sub("", cell.source)
            if "<details" in text.lower():
                raise ValueError(f"{source}: cell {cell.get('id')} keeps a <details> block that is not a "
                                 "'<summary>Solution</summary>' solution; the student edition would show it")
            if not text.strip():
                continue
            cell.source = _relink(text.strip("\n") if text != cell.source else text)
        why = _solution_like(cell)
        if why:
            raise ValueError(f"{source}: cell {cell.get('id')} looks like a solution ({why}); tag it "
                             f"{SOLUTION_TAG!r} or put it in a '<details><summary>Solution</summary>' block")
        for output in cell.get("outputs", []):  # prose cells' sentences (prose.say) hold links too
            if "text/markdown" in output.get("data", {}):
                output["data"]["text/markdown"] = _relink(output["data"]["text/markdown"])
        if cell.cell_type == "code" and r in ("stub", "check"):
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    note = nbformat.v4.new_markdown_cell(
        f"> **Student edition** of `{source}`: each exercise has a cell for your answer (replace the `...`) "
        "and a self-check below it that tells you whether the answer is right. The solutions are in the "
        "book, not here. This file is generated by `tools/make_student_edition.py`: edit the chapter, "
        "not this file.")
    note.id = _NOTE_ID
    nb.cells = cells[:1] + [note] + cells[1:]
    nb.metadata["smoothdistill"] = {"edition": "student", "source": source}
    return nb


def read_chapter(path: Path | str) -> nbformat.NotebookNode:
    """The notebook at ``path``; ``ValueError`` naming the file when it is not a readable notebook (not
    JSON, or JSON that is no notebook: nbformat raises several unrelated exception types for these)."""
    try:
        return nbformat.read(path, as_version=4)
    except (ValueError, KeyError, TypeError, AttributeError, nbformat.ValidationError) as e:
        reason = " ".join(str(e).split())[:160]
        raise ValueError(f"{path}: not a readable notebook ({type(e).__name__}: {reason})") from None


def student_text(chapter_path: Path | str, root: Path | str) -> str:
    """The student edition of ``chapter_path`` as the exact text written to ``student/``."""
    chapter_path, root = Path(chapter_path), Path(root)
    chapter = read_chapter(chapter_path)
    source = chapter_path.resolve().relative_to(Path(root).resolve()).as_posix()
    return nbformat.writes(student_edition(chapter, source)) + "\n"


def learning_goals(chapter: nbformat.NotebookNode) -> list[str]:
    """The bullet points of the chapter's "## Learning goals" section."""
    for cell in chapter.cells:
        if cell.cell_type == "markdown" and "## Learning goals" in cell.source:
            section = cell.source.split("## Learning goals", 1)[1].split("\n## ", 1)[0]
            goals: list[str] = []
            for line in section.splitlines():
                if line.startswith("- "):
                    goals.append(line[2:].strip())
                elif goals and line.startswith("  ") and line.strip():  # a bullet's continuation line
                    goals[-1] += " " + line.strip()
            return goals
    return []


def exercise_list(chapter: nbformat.NotebookNode) -> list[dict]:
    """The chapter's exercises in order: ``number``, ``question`` (first line), ``self_check`` (it has a
    check cell), ``needs_training`` (its solution calls a training run: ``run(``, ``fit(``,
    ``run_experiment(``; minutes in class rather than seconds)."""
    cells = chapter.cells
    start = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Exercises" in c.source), None)
    if start is None:
        return []
    out: list[dict] = []

    def trains(text: str) -> bool:
        return bool(_TRAINS.search(text))

    for cell in cells[start:]:
        if cell.cell_type == "markdown":
            # text before the first item of this cell (a <details> solution) belongs to the previous one
            head, *items = re.split(r"(?m)^(?=\d+\. )", cell.source)
            if out:
                out[-1]["needs_training"] |= trains(head)
            for item in items:
                number, question = item.split(". ", 1)
                out.append({"number": int(number), "question": question.split("\n")[0].strip(),
                            "self_check": False, "needs_training": trains(item)})
        elif out and role(cell) == "check":
            out[-1]["self_check"] = True
        elif out and role(cell) == "solution":
            out[-1]["needs_training"] |= trains(cell.source)
    return out


def session_use(exercise: dict) -> str:
    """Where an exercise of :func:`exercise_list` fits, exactly one of: ``"homework"`` (its solution trains
    a model: minutes), ``"in class (self-check)"`` or ``"in class (discussion)"``. One answer per
    exercise, so a table of sessions lists each exercise once."""
    if exercise["needs_training"]:
        return "homework"
    return "in class (self-check)" if exercise["self_check"] else "in class (discussion)"


_TRAINS = re.compile(r"\b(run|fit|run_experiment)\(")


def _prose(cell: nbformat.NotebookNode) -> list[str]:
    """What a reader reads of a cell: a markdown cell's text, or the markdown outputs of a code cell
    (the chapters' ``prose.say`` paragraphs, whose numbers come from the computation)."""
    if cell.cell_type == "markdown":
        return [cell.source]
    if cell.cell_type != "code":
        return []
    texts = (o.get("data", {}).get("text/markdown") for o in cell.get("outputs", []))
    return ["".join(t) if isinstance(t, list) else t for t in texts if t]


def prerequisites(chapter: nbformat.NotebookNode, number: int) -> list[int]:
    """The earlier chapters this one refers to ("chapter 5", "chapters 3 and 4" or a link ``05_x.ipynb``)
    in its markdown and in the markdown its code cells print (solutions in ``<details>`` left out)."""
    found: set[int] = set()
    for cell in chapter.cells:
        for text in (_DETAILS.sub("", t) for t in _prose(cell)):
            for m in re.finditer(r"[Cc]hapters? (\d+)((?:(?:, | and | or )\d+)*)", text):
                found.update(int(n) for n in re.findall(r"\d+", m.group(0)))
            found.update(int(n) for n in re.findall(r"\]\((\d\d)_[a-z0-9_]+\.ipynb", text))
    return sorted(n for n in found if n < number)


def gpu_cells(chapter: nbformat.NotebookNode) -> int:
    """How many code cells use CUDA when it is there (``torch.cuda``): they skip with a line on a CPU."""
    return sum(1 for c in chapter.cells if c.cell_type == "code" and "torch.cuda" in c.source)


def repository_url(config: Path | str) -> str:
    """``repository.url`` of the book's ``_config.yml`` (no trailing slash or ``.git``)."""
    cfg = yaml.safe_load(Path(config).read_text())
    url = cfg["repository"]["url"].rstrip("/")
    return url.removesuffix(".git")


def colab_url(config: Path | str, notebook: str) -> str:
    """The Colab link that opens ``notebook`` (a path in the repository, e.g. ``student/01_preface.ipynb``)
    from the repository and branch named in ``_config.yml``."""
    cfg = yaml.safe_load(Path(config).read_text())
    owner_repo = repository_url(config).split("github.com/", 1)[1]
    branch = cfg["repository"].get("branch", "main")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{notebook}"
