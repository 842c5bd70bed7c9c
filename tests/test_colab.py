"""The chapters' set-up (``smoothdistill_lib.colab``): what it does in a checkout, outside one, twice,
and with a wrong repository URL. git runs for real on scratch repositories in tmp_path; pip is
replaced by a recorder (the real install is covered by tests/test_fresh_colab.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smoothdistill_lib import colab

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _book_repo(path: Path) -> Path:
    """A scratch git repository that looks like the book (the markers, a config and a record)."""
    for rel, text in {"_toc.yml": "root: book/intro\n", "smoothdistill_lib/__init__.py": "", "book/intro.md": "# x\n",
                      "configs/main.yaml": "name: main\n", "results/main/runs/abc.json": "{}\n"}.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "book"], check=True)
    return path


@pytest.fixture
def calls(monkeypatch):
    """Record installs instead of running pip; no library checkout of our own; cwd restored."""
    made = []
    monkeypatch.setattr(colab, "install", lambda checkout, extras="": made.append((Path(checkout), extras)))
    monkeypatch.setattr(colab, "library_checkout", lambda: None)
    monkeypatch.setattr(colab, "_use", lambda checkout: None)
    monkeypatch.chdir(Path.cwd())  # bootstrap chdirs; monkeypatch puts the cwd back afterwards
    return made


def test_outside_a_checkout_it_clones_installs_and_moves_into_book(tmp_path, calls):
    origin = _book_repo(tmp_path / "origin")
    work = tmp_path / "colab"
    work.mkdir()
    root = colab.bootstrap(origin.as_uri(), where=work, quiet=True)
    assert root == work / "origin"
    assert (root / "configs" / "main.yaml").is_file() and (root / "results" / "main" / "runs" / "abc.json").is_file()
    assert Path.cwd() == root / "book"
    assert calls == [(root, "")]
    shallow = subprocess.run(["git", "-C", str(root), "rev-parse", "--is-shallow-repository"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert shallow == "true"
    # a second run in the same runtime (now inside the clone) fetches and installs nothing
    assert colab.bootstrap(origin.as_uri(), quiet=True) == root
    assert Path.cwd() == root / "book" and len(calls) == 1


def test_in_a_checkout_nothing_is_fetched(tmp_path, calls, monkeypatch):
    repo = _book_repo(tmp_path / "repo")
    monkeypatch.setattr(colab, "clone", lambda *a, **k: pytest.fail("cloned inside a checkout"))
    assert colab.bootstrap("file:///nowhere/book", where=repo / "book") == repo
    assert calls == []
    # opened at the repository root: the chapters' relative paths need book/
    colab.bootstrap("file:///nowhere/book", where=repo)
    assert Path.cwd() == repo / "book"
    # a student notebook (student/, tools/make_student_edition.py) also works from book/
    (repo / "student").mkdir()
    colab.bootstrap("file:///nowhere/book", where=repo / "student")
    assert Path.cwd() == repo / "book"


def test_a_checkout_missing_a_dependency_is_installed_from_itself(tmp_path, calls, monkeypatch):
    repo = _book_repo(tmp_path / "repo")
    monkeypatch.setattr(colab, "NEEDED", ("json", "surely_not_a_module_xyz"))
    colab.bootstrap("file:///nowhere/book", where=repo / "book", extras="[widgets]")
    assert calls == [(repo, "[widgets]")]


@pytest.mark.parametrize("url", ["file:///definitely/not/here/book", "https://invalid.invalid/x/book"])
def test_a_wrong_url_stops_with_one_line(tmp_path, calls, url, monkeypatch):
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    with pytest.raises(SystemExit) as info:
        colab.bootstrap(url, where=tmp_path, quiet=True)
    message = str(info.value)
    assert isinstance(info.value, colab.SetupError)
    assert "\n" not in message and message.startswith("set-up stopped: git clone") and "REPO_URL" in message
    assert calls == [] and not (tmp_path / "book").exists()


def test_a_repository_that_is_not_the_book_is_refused(tmp_path, calls):
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("x\n")
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t", "add", "."], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"],
                   check=True)
    work = tmp_path / "w"
    work.mkdir()
    with pytest.raises(colab.SetupError, match="is not the book's repository"):
        colab.bootstrap(other.as_uri(), where=work, quiet=True)


def test_install_refuses_to_change_torch(monkeypatch, tmp_path):
    versions = iter(["2.13.0", "2.99.0"])
    monkeypatch.setattr(colab, "_torch_version", lambda: next(versions))
    ran = []
    monkeypatch.setattr(colab, "_run", lambda cmd, what: ran.append(cmd))
    with pytest.raises(colab.SetupError, match=r"changed torch 2\.13\.0 -> 2\.99\.0"):
        colab.install(tmp_path)
    assert ran and ran[0][-2:] == ["-e", str(tmp_path)] and "only-if-needed" in ran[0]


def test_pip_failure_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(colab, "_torch_version", lambda: None)
    with pytest.raises(colab.SetupError) as info:
        colab.install(tmp_path / "no-such-project")  # pip fails: not a project folder
    assert "\n" not in str(info.value) and str(info.value).startswith("set-up stopped: pip install -e")


def test_clone_dir_and_extras():
    assert colab.clone_dir("https://github.com/me/my-book.git/", "/tmp") == Path("/tmp/my-book")
    assert colab.clone_dir("file:///srv/origin", "/tmp") == Path("/tmp/origin")
    with pytest.raises(colab.SetupError):
        colab.clone_dir("https://github.com/..", "/tmp")
    assert colab.needed_modules("[widgets]")[-1] == "ipywidgets"
    assert colab.needed_modules("") == list(colab.NEEDED)
    with pytest.raises(ValueError, match="unknown library extras"):
        colab.needed_modules("[nope]")


def test_this_checkout_is_recognised():
    root = Path(__file__).resolve().parent.parent
    assert colab.is_checkout(root) and colab.find_checkout(root / "book") == root
    assert colab.find_checkout(Path(os.sep)) is None
