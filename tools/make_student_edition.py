"""Write the student edition of every chapter to student/ (or check that it is up to date).

    .venv/bin/python tools/make_student_edition.py           # regenerate student/NN_*.ipynb
    .venv/bin/python tools/make_student_edition.py --check   # exit 1 if student/ differs

A student notebook is its chapter without solutions (cells tagged ``solution`` and markdown
``<details><summary>Solution</summary>`` blocks), with the exercise stubs and self-checks' outputs
cleared; everything else, outputs included, is the chapter's (``smoothdistill_lib.course``). Run it
after executing a chapter; tests/test_course.py fails when student/ is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smoothdistill_lib import course  # noqa: E402


def build(root: Path, out: Path) -> dict[str, str]:
    """The student edition's files (name -> text) for the chapters of ``root``/book."""
    return {p.name: course.student_text(p, root) for p in course.chapters(root / "book")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with student/ instead of writing")
    parser.add_argument("--out", type=Path, default=ROOT / course.STUDENT_DIR)
    args = parser.parse_args(argv)
    files = build(ROOT, args.out)
    if args.check:
        stale = sorted(n for n, text in files.items()
                       if not (args.out / n).exists() or (args.out / n).read_text() != text)
        extra = sorted(p.name for p in args.out.glob("*.ipynb") if p.name not in files)
        for name in stale + extra:
            print(f"{args.out / name}: out of date; run tools/make_student_edition.py")
        return 1 if stale or extra else 0
    args.out.mkdir(exist_ok=True)
    for p in args.out.glob("*.ipynb"):
        if p.name not in files:
            p.unlink()
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
