"""Export the chapters' exercises as otter-grader assignments, and grade a class's notebooks without Docker.

    .venv/bin/python tools/export_otter.py export                      # every chapter -> grading/NN_*/
    .venv/bin/python tools/export_otter.py export 03_windows_and_leakage --mode demo
    .venv/bin/python tools/export_otter.py grade grading/03_windows_and_leakage/autograder.zip \\
        submissions/*.ipynb --csv scores.csv

``export`` writes, per chapter, ``grading/<chapter>/<chapter>.ipynb`` (otter's assignment format:
each self-checking exercise is a question with its points, a public test, the self-check the student
sees, and a hidden test; ``smoothdistill_lib.grading``), runs ``otter assign`` on it and copies the
autograder to ``grading/<chapter>/autograder.zip``. ``otter assign`` also writes ``dist/student/``, a
copy for students; the book's student edition (``student/``) is graded just as well. ``--mode``
pins the run mode the grader executes the notebooks in (default: the grading machine's
``SMOOTHDISTILL_MODE``); ``--run-tests`` lets ``otter assign`` run the tests on the solutions first
(it executes the chapter: minutes for the chapters that train).

``grade`` runs ``otter run`` (otter 7's grading without Docker, in this Python: the library, torch
and the data must be here, ``SMOOTHDISTILL_DATA`` set as for the chapters) on each notebook, prints
one line per submission and writes the points per exercise to ``--csv``.

Every expected failure prints ONE line, ``error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smoothdistill_lib import course, exercises, grading  # noqa: E402
from smoothdistill_lib.config import MODES  # noqa: E402


class ToolError(Exception):
    """An expected failure: printed as one line, exit status 2."""


def _otter(*args: str, cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m otter ARGS`` in this Python (so otter sees the same library, torch and data)."""
    return subprocess.run([sys.executable, "-m", "otter", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def export_chapter(chapter: Path, out: Path, mode: str | None = None, run_tests: bool = False,
                   assign: bool = True) -> dict:
    """Write ``out/<chapter>/<chapter>.ipynb`` and (with ``assign``) ``out/<chapter>/autograder.zip``.

    Returns ``{"chapter", "master", "autograder", "graded", "skipped", "points"}``.
    """
    nb = course.read_chapter(chapter)
    master, graded, skipped = grading.master_notebook(nb, f"book/{chapter.name}", mode=mode, run_tests=run_tests)
    folder = out / chapter.stem
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / chapter.name
    nbformat.write(master, path)
    points = sum(exercises.EXERCISES[n].points for n in graded)
    result = {"chapter": chapter.stem, "master": path, "autograder": None, "graded": graded, "skipped": skipped,
              "points": points}
    if not assign:
        return result
    dist = folder / "dist"
    shutil.rmtree(dist, ignore_errors=True)  # otter assign writes a fresh one
    args = ["assign", "--no-pdfs", *([] if run_tests else ["--no-run-tests"]), chapter.name, "dist"]
    proc = _otter(*args, cwd=folder)
    zips = sorted((dist / "autograder").glob("*-autograder_*.zip"))
    if proc.returncode != 0 or not zips:
        raise ToolError(f"otter assign failed for {path}: {_last_line(proc)}")
    result["autograder"] = folder / "autograder.zip"
    shutil.copyfile(zips[-1], result["autograder"])
    return result


def read_results(path: Path) -> dict[str, tuple[float, float]]:
    """``{question: (score, max_score)}`` from otter's ``results.json`` (the public-tests summary left out)."""
    data = json.loads(path.read_text())
    return {t["name"]: (float(t["score"]), float(t["max_score"])) for t in data["tests"]
            if "max_score" in t and t.get("name") != "Public Tests"}


def grade_submission(autograder: Path, submission: Path, timeout: float) -> dict[str, tuple[float, float]]:
    """Grade one notebook with ``otter run`` (no Docker); ``{question: (score, max_score)}``."""
    with tempfile.TemporaryDirectory(prefix="otter-run-") as tmp:
        try:
            proc = _otter("run", "--no-logo", "-a", str(autograder.resolve()), "-o", tmp, str(submission.resolve()),
                          timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{submission}: grading took more than {timeout:.0f} s (--timeout)") from None
        results = Path(tmp) / "results.json"
        if proc.returncode != 0 or not results.exists():
            raise ToolError(f"{submission}: otter run failed: {_last_line(proc)}")
        return read_results(results)


def _chapters(names: list[str]) -> list[Path]:
    every = course.chapters(ROOT / "book")
    if not names:
        return every
    by_name = {p.stem: p for p in every} | {p.name: p for p in every}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ToolError(f"no chapter {unknown[0]!r}; choose from {', '.join(p.stem for p in every)}")
    return [by_name[n] for n in names]


def cmd_export(args) -> int:
    chapters = _chapters(args.chapters)
    for chapter in chapters:
        try:
            r = export_chapter(chapter, args.out, mode=args.mode, run_tests=args.run_tests, assign=not args.no_assign)
        except ValueError as e:
            if args.chapters:  # asked for by name: its problem is an error
                raise ToolError(str(e)) from None
            print(f"{chapter.stem}: skipped ({' '.join(str(e).split())})")
            continue
        where = r["autograder"] or r["master"]
        left = f"; not graded yet: {', '.join(r['skipped'])}" if r["skipped"] else ""
        print(f"{r['chapter']}: exercises {', '.join(r['graded'])}, {r['points']} points -> {where}{left}")
    return 0


def cmd_grade(args) -> int:
    if not args.autograder.is_file():
        raise ToolError(f"no autograder at {args.autograder}: run `tools/export_otter.py export` first")
    missing = [s for s in args.submissions if not s.is_file()]
    if missing:
        raise ToolError(f"no submission at {missing[0]}")
    rows, questions = [], []
    for submission in args.submissions:
        scores = grade_submission(args.autograder, submission, args.timeout)
        questions += [q for q in scores if q not in questions]
        got, possible = sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())
        detail = ", ".join(f"{q} {s:g}/{m:g}" for q, (s, m) in scores.items())
        print(f"{submission.name}: {got:g} / {possible:g} ({detail})")
        rows.append((submission.name, scores, got, possible))
    if args.csv:
        with args.csv.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["submission", *questions, "total", "possible"])
            for name, scores, got, possible in rows:
                w.writerow([name, *(f"{scores[q][0]:g}" if q in scores else "" for q in questions), f"{got:g}",
                            f"{possible:g}"])
        print(f"wrote {args.csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the otter assignments (and autograders) of chapters")
    ex.add_argument("chapters", nargs="*", help="chapters, e.g. 03_windows_and_leakage (default: all)")
    ex.add_argument("--out", type=Path, default=ROOT / "grading", help="output folder (default: grading/)")
    ex.add_argument("--mode", choices=MODES, default=None, help="run mode the grader executes notebooks in")
    ex.add_argument("--run-tests", action="store_true", help="let otter assign check the tests on the solutions")
    ex.add_argument("--no-assign", action="store_true", help="write the master notebooks only")
    gr = sub.add_parser("grade", help="grade notebooks with otter run (no Docker)")
    gr.add_argument("autograder", type=Path, help="grading/<chapter>/autograder.zip")
    gr.add_argument("submissions", type=Path, nargs="+", help="the students' notebooks")
    gr.add_argument("--csv", type=Path, default=None, help="write the points per exercise here")
    gr.add_argument("--timeout", type=float, default=1800, help="seconds per submission (default 1800)")
    args = parser.parse_args(argv)
    try:
        return cmd_export(args) if args.command == "export" else cmd_grade(args)
    except (ToolError, ValueError, OSError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
