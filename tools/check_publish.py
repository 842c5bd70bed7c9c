"""Refuse to publish the book while it points at the placeholder repository.

    .venv/bin/python tools/check_publish.py            # in GitHub Actions (GITHUB_ACTIONS=true): enforced
    .venv/bin/python tools/check_publish.py --force    # anywhere: the same checks

The repository URL lives in one place, ``repository.url`` of ``_config.yml`` (the launch and repository
buttons, the student edition's Colab links); every chapter's and student notebook's set-up cell repeats
it in its ``REPO_URL`` line, which a reader's Colab clones. A published copy whose URL is still the
placeholder ``https://github.com/smoothdistill/smoothdistill-book`` sends readers to a repository that is
not theirs, and one whose notebooks disagree with ``_config.yml`` clones the wrong book. So a published
build (the GitHub Actions workflow, ``.github/workflows/book.yml``) fails, one line per problem, when:

- ``repository.url`` is the placeholder, or not ``https://github.com/<owner>/<repo>``;
- it is not the repository the workflow runs in (``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY``);
- a notebook's ``REPO_URL`` line names another URL.

Outside GitHub Actions it only says that nothing is enforced (a local build or a fork in progress may
keep the placeholder). Fix with ``tools/set_repo_url.py https://github.com/<owner>/<repo>``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "https://github.com/smoothdistill/smoothdistill-book"
GITHUB_URL = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
#: the set-up cell's line: REPO_URL = "https://github.com/owner/repo"  # = repository.url in _config.yml
REPO_URL_LINE = re.compile(r'^(?P<lead>\s*REPO_URL\s*=\s*)(?P<q>["\'])(?P<url>[^"\']*)(?P=q)', re.M)


def config_url(config: Path) -> str:
    return str(((yaml.safe_load(config.read_text()) or {}).get("repository") or {}).get("url") or "")


def notebook_urls(path: Path) -> list[str]:
    """The URLs of ``path``'s ``REPO_URL = "..."`` lines (code cells)."""
    notebook = nbformat.read(path, as_version=4)
    return [m.group("url") for c in notebook.cells if c.cell_type == "code" for m in REPO_URL_LINE.finditer(c.source)]


def default_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(root.glob("book/*.ipynb")) + sorted(root.glob("student/*.ipynb"))


def problems(root: Path = ROOT, env: Mapping[str, str] | None = None) -> list[str]:
    """Why the book at ``root`` must not be published (empty list = it may)."""
    env = os.environ if env is None else env
    config = root / "_config.yml"
    url = config_url(config).rstrip("/")
    found = []
    if url == PLACEHOLDER:
        found.append(f"{config}: repository.url is still the placeholder {PLACEHOLDER}; "
                     "run tools/set_repo_url.py https://github.com/<owner>/<repo>")
    elif not GITHUB_URL.match(url):
        found.append(f"{config}: repository.url {url!r} is not https://github.com/<owner>/<repo>")
    here = env.get("GITHUB_REPOSITORY")
    if here and url != PLACEHOLDER:
        expected = f"{env.get('GITHUB_SERVER_URL', 'https://github.com').rstrip('/')}/{here}"
        if url.lower() != expected.lower():
            found.append(f"{config}: repository.url {url} is not this repository, {expected}")
    for path in default_notebooks(root):
        for other in notebook_urls(path):
            if other.rstrip("/") != url:
                found.append(f"{path}: REPO_URL {other} differs from repository.url {url}; "
                             "run tools/set_repo_url.py")
    return found


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="check even outside GitHub Actions")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true" and not args.force:
        print("check_publish: not a GitHub Actions build, nothing enforced (--force checks anyway)")
        return 0
    found = problems(args.root, env)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        print(f"check_publish: the book points at {config_url(args.root / '_config.yml')}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
