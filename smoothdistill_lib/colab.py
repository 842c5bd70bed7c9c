"""The chapters' set-up: bring the whole book wherever a chapter is opened.

Every chapter's first code cell is a few lines: ``REPO_URL``, a guarded import of this module (if
the library is not installed yet, the cell itself clones the repository and installs it: the
template ``book/_template.ipynb`` holds the cell), then ``colab.bootstrap(REPO_URL)``. This module does the rest:

- **in a checkout** (JupyterLab in this repository): nothing is fetched; the library's dependencies
  are installed from the checkout (``pip install -e``) only when one is missing (a fresh venv);
- **outside one** (Colab, a chapter downloaded on its own): a shallow ``git clone`` of ``REPO_URL``
  (kept in the working folder, reused if there), the library installed from it with the version
  ranges of its ``pyproject.toml`` (an installed torch, e.g. Colab's GPU build, is never replaced:
  checked), and the working folder moved to the clone's ``book/``, so ``configs/``, the recorded
  ``results/`` and every relative path of the chapters are there.

Running it again in the same runtime does nothing twice: the working folder is then a checkout.
A wrong or unreachable URL stops the cell with ONE line (:class:`SetupError`, a ``SystemExit``, so
Jupyter shows no traceback).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

#: modules a chapter imports; a checkout whose Python lacks one gets ``pip install -e <checkout>``
NEEDED = ("torch", "numpy", "pandas", "scipy", "sklearn", "matplotlib", "seaborn", "tqdm", "yaml")
#: modules of the library's optional extras (pyproject ``[project.optional-dependencies]``)
EXTRA_MODULES = {"widgets": ("ipywidgets",), "fast": ("pyarrow",), "gpu": ("pynvml",),
                 "deploy": ("onnx", "onnxruntime", "onnxscript", "onnx_ir"), "grading": ("otter",)}
#: files that make a folder a checkout of the book
MARKERS = ("_toc.yml", "smoothdistill_lib", "book")
#: the student edition's folder (tools/make_student_edition.py); its notebooks also run from book/
STUDENT = "student"


class SetupError(SystemExit):
    """The set-up cannot continue; the message is one line. A ``SystemExit``: no traceback in Jupyter."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def is_checkout(folder: Path | str) -> bool:
    """Does ``folder`` hold the book's repository (``_toc.yml``, ``smoothdistill_lib/``, ``book/``)?"""
    folder = Path(folder)
    return all((folder / m).exists() for m in MARKERS)


def find_checkout(start: Path | str | None = None) -> Path | None:
    """The checkout that holds ``start`` (default: the working folder) or one of its parents."""
    start = Path(start or Path.cwd()).resolve()
    return next((d for d in (start, *start.parents) if is_checkout(d)), None)


def library_checkout() -> Path | None:
    """The checkout this library was imported from (an editable install of a clone), else None."""
    here = Path(__file__).resolve().parent.parent
    return here if is_checkout(here) else None


def clone_dir(repo_url: str, parent: Path | str | None = None) -> Path:
    """Where a clone of ``repo_url`` goes: ``<parent>/<repository name>`` (parent: working folder)."""
    name = repo_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not name or name in (".", ".."):
        raise SetupError(f"set-up stopped: REPO_URL {repo_url!r} names no repository")
    return Path(parent or Path.cwd()).resolve() / name


def _run(cmd: list[str], what: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SetupError(f"set-up stopped: {what}: {Path(cmd[0]).name} is not installed") from None
    except subprocess.CalledProcessError as e:
        lines = [line.strip() for line in (e.stderr or e.stdout or "").splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.lower().startswith(("fatal", "error"))),
                      lines[-1] if lines else f"exit status {e.returncode}")
        raise SetupError(f"set-up stopped: {what} failed ({reason})") from None


def clone(repo_url: str, dest: Path, branch: str | None = None) -> Path:
    """Shallow clone of ``repo_url`` into ``dest`` (kept as is when ``dest`` is already a checkout)."""
    if is_checkout(dest):
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise SetupError(f"set-up stopped: {dest} exists and is not a checkout of the book; move it away")
    cmd = ["git", "clone", "--quiet", "--depth", "1", *(["--branch", branch] if branch else []), repo_url, str(dest)]
    _run(cmd, f"git clone {repo_url} (check REPO_URL)")
    if not is_checkout(dest):
        raise SetupError(f"set-up stopped: {repo_url} is not the book's repository (no {', '.join(MARKERS)})")
    return dest


def _torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def install(checkout: Path, extras: str = "") -> None:
    """``pip install -e <checkout><extras>`` by its pyproject's ranges, never replacing an installed torch."""
    before = _torch_version()
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade-strategy", "only-if-needed",
           "-e", f"{checkout}{extras}"]
    _run(cmd, f"pip install -e {checkout.name}{extras}")
    importlib.invalidate_caches()
    after = _torch_version()
    if before is not None and after != before:
        raise SetupError(f"set-up stopped: installing the library changed torch {before} -> {after}; "
                         "restart the runtime and reinstall the torch you had")


def needed_modules(extras: str = "") -> list[str]:
    """:data:`NEEDED` plus the modules of ``extras`` (``"[widgets]"``, ``"[widgets,fast]"`` or ``""``)."""
    names = [e.strip() for e in extras.strip().strip("[]").split(",") if e.strip()]
    unknown = [e for e in names if e not in EXTRA_MODULES]
    if unknown:
        raise ValueError(f"unknown library extras {unknown}; choose from {sorted(EXTRA_MODULES)}")
    return list(NEEDED) + [m for e in names for m in EXTRA_MODULES[e]]


def _missing(modules) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def _use(checkout: Path) -> None:
    """Make ``import smoothdistill_lib`` resolve to ``checkout``'s library in this process."""
    root = str(checkout)
    if root not in sys.path:
        sys.path.insert(0, root)
    lib = sys.modules.get("smoothdistill_lib")
    if lib is not None and not Path(lib.__file__).resolve().is_relative_to(checkout.resolve()):
        for name in [n for n in sys.modules if n == "smoothdistill_lib" or n.startswith("smoothdistill_lib.")]:
            if name != __name__:  # this module keeps running; the others are imported afresh
                del sys.modules[name]
    importlib.invalidate_caches()


def bootstrap(repo_url: str, *, branch: str | None = None, extras: str = "", where: Path | str | None = None,
              quiet: bool = False) -> Path:
    """Make the whole book available and move into its ``book/`` folder; return the checkout.

    ``where``: the working folder to start from (default: the current one). See the module's doc.
    """
    start = Path(where or Path.cwd()).resolve()
    needed = needed_modules(extras)
    checkout = find_checkout(start)
    if checkout is not None:  # JupyterLab in the repository, or a second run in Colab
        if _missing(needed):
            install(checkout, extras)
        _use(checkout)
        book = checkout / "book"
        # opened at the repository root, or a student notebook (student/): chapters run from book/,
        # where their relative paths (configs, records, figures) point
        if start in (checkout.resolve(), (checkout / STUDENT).resolve()):
            os.chdir(book)
        return checkout
    mine = library_checkout()  # the set-up cell's own clone, if it made one
    checkout = mine or clone(repo_url, clone_dir(repo_url, start), branch)
    if checkout != mine or _missing(needed):
        install(checkout, extras)
    _use(checkout)
    os.chdir(checkout / "book")
    if not quiet:
        print(f"set-up: the book is in {checkout.name}/ (from {repo_url}); working folder {checkout.name}/book")
    return checkout
