"""A fresh Colab, simulated: a chapter opened outside the repository brings the whole book.

In a temporary folder outside the repository, with this environment's torch (and the other
dependencies) already installed but NOT the book's library, the chapters' own set-up cell runs with
``REPO_URL`` pointing at a local clone of this checkout's HEAD (``file://``; so commit first). It must
clone the book shallowly, ``pip install -e`` it without touching torch, and move into the clone's
``book/``; then every chapter runs in quick mode from there, with no data folder and downloads off (a reader
who has fetched nothing): the result chapters find the recorded results, and a chapter that needs
WISDM says so in one line instead of failing. A wrong URL stops the set-up with one line.

How "fresh" is made without a network: a venv without pip or packages whose only link to this
environment is a ``.pth`` line naming this environment's site-packages. A path listed in a ``.pth``
file is importable, but the ``.pth`` files inside it (this environment's editable install of the
library) are not processed, so ``import smoothdistill_lib`` fails there exactly as in Colab. pip is
told to use no index and the installed setuptools (no build isolation), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT_CHAPTERS = ["08_results", "09_ablations", "10_cost", "11_smldist"]  # they read committed records
#: every chapter, in the state of a reader who has fetched no data (SMOOTHDISTILL_DOWNLOAD=0, no folder)
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
              pytest.mark.timeout(600)]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _fresh_runtime(tmp: Path) -> tuple[Path, dict]:
    """A python without the book's library but with this environment's packages, and its environment."""
    venv = tmp / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "host_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "SMOOTHDISTILL_"))}
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
               SMOOTHDISTILL_MODE="quick", SMOOTHDISTILL_DOWNLOAD="0", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               GIT_TERMINAL_PROMPT="0", PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    probe = subprocess.run([str(python), "-c", "import smoothdistill_lib"], cwd=tmp, env=env, capture_output=True)
    assert probe.returncode != 0, "the library must not be importable in the fresh runtime"
    return python, env


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of the fresh runtime, its environment, the origin URL, the work folder)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("fresh_colab")
    head = _git("rev-parse", "HEAD")
    origin = tmp / "origin" / "smoothdistill-book"  # the clone's folder name = the repository's name
    _git("clone", "--quiet", "--shared", "--no-checkout", str(ROOT), str(origin), cwd=tmp)
    _git("checkout", "--quiet", "--detach", head, cwd=origin)
    python, env = _fresh_runtime(tmp)
    work = tmp / "content"
    work.mkdir()
    return python, env, origin.as_uri(), work


def _chapter_for(url: str, name: str, out: Path) -> Path:
    """Chapter ``name`` as a reader downloads it, its REPO_URL pointing at ``url``, plus a probe cell."""
    notebook = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    setup = next(c for c in notebook.cells if c.cell_type == "code")
    setup.source, n = re.subn(r'^REPO_URL = "[^"]*"', f'REPO_URL = "{url}"', setup.source, flags=re.M)
    assert n == 1, "the set-up cell has one REPO_URL line"
    notebook.cells.append(nbformat.v4.new_code_cell(textwrap.dedent("""\
        import json, os, torch, smoothdistill_lib
        print("PROBE" + json.dumps({"cwd": os.getcwd(), "lib": smoothdistill_lib.__file__, "torch": torch.__version__}))
        colab.bootstrap(REPO_URL)  # again, in the same runtime: nothing happens twice
        print("PROBE2" + json.dumps({"cwd": os.getcwd()}))""")))
    path = out / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


RUN = textwrap.dedent("""\
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
    nbformat.write(nb, sys.argv[1])
""")


def test_a_chapter_outside_the_repository_brings_the_book_and_keeps_torch(colab):
    import torch

    python, env, url, work = colab
    for name in RESULT_CHAPTERS[:1]:
        path = _chapter_for(url, name, work)
        run = subprocess.run([str(python), "-c", RUN, str(path), str(work)], cwd=work, env=env, capture_output=True,
                             text=True, timeout=500)
        assert run.returncode == 0, f"{name} failed in the fresh runtime:\n{run.stderr[-3000:]}"
        notebook = nbformat.read(path, as_version=4)
        text = "\n".join(json.dumps(o) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
        probe = json.loads(re.search(r"PROBE(\{.*?\})", text.replace('\\"', '"')).group(1))
        clone = work / "smoothdistill-book"
        assert Path(probe["cwd"]) == clone / "book" and Path(probe["lib"]).is_relative_to(clone)
        assert probe["torch"] == torch.__version__  # the runtime's torch was kept
        assert json.loads(re.search(r"PROBE2(\{.*?\})", text.replace('\\"', '"')).group(1))["cwd"] == probe["cwd"]
        assert "No records" not in text and "not here; clone" not in text, f"{name} did not find the recorded results"
    # one shallow clone, the library installed editable from it, no torch installed into the runtime
    clone = work / "smoothdistill-book"
    assert _git("rev-parse", "--is-shallow-repository", cwd=clone) == "true"
    assert _git("rev-parse", "HEAD", cwd=clone) == _git("rev-parse", "HEAD")
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    assert not list(site.glob("torch*")), "torch was installed into the fresh runtime"
    assert list(site.glob("*smoothdistill_lib*")), "the library was not installed from the clone"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_runs_without_data_in_a_fresh_runtime(colab, name):
    """No data folder and downloads off: the chapter runs to its end without an error output; the
    result chapters show their recorded results; a missing dataset is named in a line, not a traceback."""
    python, env, url, work = colab
    path = _chapter_for(url, name, work)
    run = subprocess.run([str(python), "-c", RUN, str(path), str(work)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=500)
    assert run.returncode == 0, f"{name} failed with no data in a fresh runtime:\n{run.stderr[-3000:]}"
    notebook = nbformat.read(path, as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    text = "\n".join(json.dumps(o) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "Traceback" not in text, f"{name} printed a traceback"
    if name in RESULT_CHAPTERS:
        assert "No records" not in text and "not here; clone" not in text, f"{name} did not find the recorded results"


def test_a_wrong_url_stops_the_set_up_cell_with_one_line(tmp_path):
    python, env = _fresh_runtime(tmp_path)
    work = tmp_path
    notebook = nbformat.read(ROOT / "book" / "_template.ipynb", as_version=4)
    setup = next(c for c in notebook.cells if c.cell_type == "code").source
    setup = re.sub(r'^REPO_URL = "[^"]*"', f'REPO_URL = "{(work / "no-such-repo").as_uri()}"', setup, flags=re.M)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([str(python), "-c", setup], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("set-up stopped: git clone failed for REPO_URL"), run.stderr
    assert "Traceback" not in run.stderr and not any(elsewhere.iterdir())
