"""Check that the built book needs no network for its widgets and math: run after ``jupyter-book build .``.

    .venv/bin/python tools/check_widgets_offline.py _build/html [--browser chromium]

Static check (always): every page that embeds widget state loads ``require.js`` and
``embed-amd.js`` from the book's own ``_static/`` and no script from a CDN (jsdelivr, cdnjs,
unpkg) with "widget", "require" or "embed" in its URL. With ``--browser``: the page is also opened
in headless Chromium with every host name unresolvable, and the rendered DOM must hold widget views
(``jupyter-widgets`` elements) - i.e. the controls really render offline.

Every built page (widgets or not) must also load no script at all from a remote URL: MathJax comes
from ``_static/mathjax`` (``book/_mathjax``), and any new CDN script is reported.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

STATE = "application/vnd.jupyter.widget-state+json"
SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"", re.I)
CDN = re.compile(r"https?://[^/]*(jsdelivr|cdnjs|unpkg)[^\s\"']*", re.I)
NEEDED = ("require.js", "embed-amd.js")


def widget_pages(html_dir: Path) -> list[Path]:
    """Built pages that embed ipywidgets state."""
    return sorted(p for p in html_dir.rglob("*.html") if STATE in p.read_text(errors="replace"))


def static_problems(page: Path) -> list[str]:
    """Problems of one page's script tags (empty list = loads its widget scripts locally)."""
    srcs = SCRIPT_SRC.findall(page.read_text(errors="replace"))
    problems = []
    for name in NEEDED:
        local = [s for s in srcs if s.split("?")[0].endswith(f"_static/{name}") and "://" not in s]
        if not local:
            problems.append(f"{page}: no local _static/{name} script")
    for s in srcs:
        if CDN.match(s) and re.search(r"widget|require|embed", s, re.I):
            problems.append(f"{page}: widget script from a CDN: {s}")
    return problems


def remote_scripts(page: Path) -> list[str]:
    """Scripts of ``page`` loaded from another host (http, https or protocol-relative URLs)."""
    return [s for s in SCRIPT_SRC.findall(page.read_text(errors="replace")) if re.match(r"(https?:)?//", s, re.I)]


def rendered_widgets(page: Path, browser: str, timeout: int = 120) -> int:
    """Widget view elements in the DOM after headless ``browser`` rendered ``page`` offline."""
    cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    return len(re.findall(r"class=\"[^\"]*\bjupyter-widgets\b", dom))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html_dir", type=Path, help="the built HTML folder, e.g. _build/html")
    p.add_argument("--browser", default=None, help="headless Chromium executable for the render check")
    args = p.parse_args(argv)
    if not args.html_dir.is_dir():
        print(f"error: {args.html_dir} is not a folder (build the book first)", file=sys.stderr)
        return 2
    pages = widget_pages(args.html_dir)
    problems = [msg for page in pages for msg in static_problems(page)]
    all_pages = sorted(args.html_dir.rglob("*.html"))
    problems += [f"{page}: script from the network: {src}" for page in all_pages for src in remote_scripts(page)]
    if args.browser:
        for page in pages:
            n = rendered_widgets(page, args.browser)
            print(f"{page}: {n} widget view element(s) rendered offline")
            if n == 0:
                problems.append(f"{page}: no widget rendered offline")
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    print(f"{len(pages)} page(s) with widgets and {len(all_pages)} page(s) in all checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
