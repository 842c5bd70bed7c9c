"""Write the student edition of every chapter to student/ (or check that it is up to date).

    .venv/bin/python tools/make_student_edition.py           # regenerate student/NN_*.ipynb
    .venv/bin/python tools/make_student_edition.py --check   # exit 1 if student/ differs

A student notebook is its chapter without solutions (cells tagged ``solution``, in any case or as
``solutions``, and markdown ``<details><summary>Solution</summary>`` blocks), with the exercise stubs
and self-checks' outputs cleared; everything else, outputs included, is the chapter's
(``smoothdistill_lib.course``). Run it after executing a chapter; tests/test_course.py fails when
student/ is stale.

A chapter that is not a notebook, a malformed exercise (a stub without its check, a solution without
its exercise id, ...), anything that looks like a solution outside the known markers, or an output
folder that does not exist stops the tool with ONE line, ``error: ...``, and exit status 2; nothing
is written then (every chapter is converted before the first file is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smoothdistill_lib import course  # noqa: E402


def build(root: Path, out: Path) -> dict[str, str]:
    """The student edition's files (name -> text) for the chapters of ``root``/book.

    Raises ``ValueError`` (a chapter is no notebook, or a malformed or leaking exercise; the message
    names the file and the cell).
    """
    return {p.name: course.student_text(p, root) for p in course.chapters(root / "book")}


def _fail(message: str) -> int:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)  # one line, whatever the message
    return 2


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with student/ instead of writing")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: student/)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else root / course.STUDENT_DIR
    if not out.is_dir():
        return _fail(f"output folder {out} does not exist (create it, or pass --out)")
    try:
        files = build(root, out)
    except (ValueError, OSError) as e:
        return _fail(str(e))
    if args.check:
        stale = sorted(n for n, text in files.items()
                       if not (out / n).exists() or (out / n).read_text() != text)
        extra = sorted(p.name for p in out.glob("*.ipynb") if p.name not in files)
        for name in stale + extra:
            print(f"{out / name}: out of date; run tools/make_student_edition.py")
        return 1 if stale or extra else 0
    try:
        for p in out.glob("*.ipynb"):
            if p.name not in files:
                p.unlink()
        for name, text in files.items():
            (out / name).write_text(text)
    except OSError as e:
        return _fail(f"cannot write {out}: {e}")
    print(f"wrote {len(files)} student notebooks to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
