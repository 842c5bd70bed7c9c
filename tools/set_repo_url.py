"""Point the book at your repository: ``_config.yml`` and every notebook's ``REPO_URL`` in one go.

    .venv/bin/python tools/set_repo_url.py https://github.com/<owner>/<repo>

Rewrites ``repository.url`` in ``_config.yml`` (the launch and repository buttons and the student
edition's Colab links are built from it), the ``REPO_URL = "..."`` line of the set-up cell of every
notebook in ``book/`` (chapters, landing page, guide, template) and ``student/``, and the Colab links
into the old repository in the README and in stored outputs (the instructor guide's links to the
student edition), which spell the same ``<owner>/<repo>``. Nothing else changes: the notebooks are
written back with nbformat (indent 1, their final newline kept).
``tools/check_publish.py`` fails a published build until this has been run; ``--check`` lists what
would change and exits 1 if anything would.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_publish import GITHUB_URL, REPO_URL_LINE, config_url, default_notebooks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# `  url: https://github.com/...` inside the `repository:` block (comments and layout kept)
_CONFIG_URL = re.compile(r"^(repository:\s*\n(?:[ \t]+.*\n|\s*\n)*?[ \t]+url:[ \t]*)(\S+)", re.M)


def set_config(text: str, url: str) -> str:
    new, n = _CONFIG_URL.subn(lambda m: m.group(1) + url, text, count=1)
    if n != 1:
        raise ValueError("_config.yml has no `url:` line in its `repository:` block")
    return new


def _colab_links(text: str, old: str, url: str) -> str:
    """``text`` with Colab links into ``old`` (``.../github/<owner>/<repo>/...``) pointing into ``url``."""
    before, after = (f"colab.research.google.com/github/{u.split('github.com/', 1)[1]}/" for u in (old, url))
    return text.replace(before, after)


def set_notebook(path: Path, url: str, write: bool = True, old: str | None = None) -> int:
    """Rewrite ``path``'s ``REPO_URL`` lines, and with ``old`` the Colab links into ``old`` in its
    stored outputs (the instructor guide's student-edition links); the number of changes."""
    text = path.read_text()
    notebook = nbformat.read(path, as_version=4)
    changed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        new = REPO_URL_LINE.sub(lambda m: f"{m.group('lead')}{m.group('q')}{url}{m.group('q')}", cell.source)
        changed += sum(m.group("url") != url for m in REPO_URL_LINE.finditer(cell.source))
        cell.source = new
        if old is None or not GITHUB_URL.match(old) or old == url:
            continue
        for output in cell.get("outputs", []):
            for key, value in output.get("data", {}).items():
                if isinstance(value, str) and (moved := _colab_links(value, old, url)) != value:
                    output["data"][key], changed = moved, changed + 1
    if changed and write:
        out = nbformat.writes(notebook)
        path.write_text(out + "\n" if text.endswith("\n") and not out.endswith("\n") else out)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="https://github.com/<owner>/<repo> (no .git, no trailing slash)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    url = args.url.strip().removesuffix(".git").rstrip("/")
    if not GITHUB_URL.match(url):
        print(f"error: {args.url!r} is not https://github.com/<owner>/<repo>", file=sys.stderr)
        return 2
    config = args.root / "_config.yml"
    old = config_url(config).rstrip("/")
    changes = []
    text = config.read_text()
    if old != url:
        changes.append(f"{config}: repository.url {old} -> {url}")
        if not args.check:
            config.write_text(set_config(text, url))
    readme = args.root / "README.md"
    if readme.exists() and GITHUB_URL.match(old) and old != url:
        before = readme.read_text()
        after = _colab_links(before, old, url)
        if after != before:
            changes.append(f"{readme}: Colab links -> {url}")
            if not args.check:
                readme.write_text(after)
    for path in default_notebooks(args.root):
        n = set_notebook(path, url, write=not args.check, old=old)
        if n:
            changes.append(f"{path}: {n} REPO_URL line(s) or Colab link(s) -> {url}")
    for line in changes:
        print(line)
    print(f"{len(changes)} file(s) {'to change' if args.check else 'changed'}", file=sys.stderr)
    return 1 if args.check and changes else 0


if __name__ == "__main__":
    raise SystemExit(main())
