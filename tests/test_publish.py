"""Publishing: the GitHub Actions workflow (valid, same checks as .ci/run, Pages, release asset), the
check that refuses to publish the placeholder repository URL, and the tool that sets the URL."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
sys.path.insert(0, str(ROOT / "tools"))

import check_publish  # noqa: E402
import set_repo_url  # noqa: E402

PLACEHOLDER = check_publish.PLACEHOLDER
HAVE_CHECK_JSONSCHEMA = importlib.util.find_spec("check_jsonschema") is not None


# ---- the workflow ---------------------------------------------------------------------------------

def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not HAVE_CHECK_JSONSCHEMA, reason="check-jsonschema is not installed (pip install -r requirements.txt)")
def test_the_workflow_is_valid_offline(tmp_path):
    ok = _validate(WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["build"]["runs-on"]  # the schema catches a job with nowhere to run
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert _validate(tmp_path / "broken.yml").returncode != 0


def test_the_workflow_builds_checks_publishes_and_attaches_the_student_edition():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request", "release"} <= set(triggers)
    build = wf["jobs"]["build"]
    runs = [s.get("run", "") for s in build["steps"]]
    assert any(r.strip() == "bash .ci/run" for r in runs)  # the same checks as CI, not a copy of them
    publish = next(s for s in build["steps"] if "check_publish.py" in s.get("run", ""))
    assert publish["if"] == "github.event_name != 'pull_request'"
    assert [s["uses"].split("@")[0] for s in build["steps"] if "pages" in s.get("uses", "")] == \
        ["actions/upload-pages-artifact"]
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    release = wf["jobs"]["student-edition"]
    assert release["if"] == "github.event_name == 'release'" and release["permissions"] == {"contents": "write"}
    script = release["steps"][-1]["run"]
    assert "zip -r" in script and " student" in script and "gh release upload" in script
    ci = (ROOT / ".ci" / "run").read_text()
    assert "tools/check_html.py _build/html" in ci and "pytest" in ci  # what `bash .ci/run` runs


# ---- check_publish ----------------------------------------------------------------------------------

def _book(root: Path, url: str, notebook_url: str | None = None) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text(f"title: x\n# the one place\nrepository:\n  url: {url}  # yours\n  branch: main\n")
    (root / "README.md").write_text(f"[open](https://colab.research.google.com/github/{url.split('github.com/')[1]}"
                                    "/blob/main/student/01_x.ipynb)\n")
    notebook = nbformat.v4.new_notebook()
    setup = nbformat.v4.new_code_cell(f'REPO_URL = "{notebook_url or url}"  # = repository.url in _config.yml\n'
                                      "import os")
    guide = nbformat.v4.new_code_cell("links()")
    guide.outputs = [nbformat.v4.new_output("display_data", data={
        "text/markdown": f"[open](https://colab.research.google.com/github/{url.split('github.com/')[1]}/blob/main/x)"})]
    notebook.cells = [nbformat.v4.new_markdown_cell("# A chapter"), setup, guide]
    (root / "book" / "01_x.ipynb").write_text(nbformat.writes(notebook) + "\n")
    return root


def test_a_published_build_refuses_the_placeholder(tmp_path, capsys):
    root = _book(tmp_path, PLACEHOLDER)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "ana/my-book", "GITHUB_SERVER_URL": "https://github.com"}
    assert check_publish.main(["--root", str(root)], env=env) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "still the placeholder" in err[0] and "tools/set_repo_url.py" in err[0]
    # outside GitHub Actions nothing is enforced; --force checks anyway
    assert check_publish.main(["--root", str(root)], env={}) == 0
    assert "nothing enforced" in capsys.readouterr().out
    assert check_publish.main(["--root", str(root), "--force"], env={}) == 1


def test_a_published_build_refuses_another_repository_and_disagreeing_notebooks(tmp_path):
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "ana/my-book", "GITHUB_SERVER_URL": "https://github.com"}
    other = _book(tmp_path / "a", "https://github.com/bob/his-book")
    assert any("is not this repository, https://github.com/ana/my-book" in p for p in check_publish.problems(other, env))
    split = _book(tmp_path / "b", "https://github.com/ana/my-book", notebook_url=PLACEHOLDER)
    problems = check_publish.problems(split, env)
    assert len(problems) == 1 and "01_x.ipynb: REPO_URL" in problems[0]
    good = _book(tmp_path / "c", "https://github.com/Ana/My-Book")
    assert check_publish.problems(good, env) == []
    assert check_publish.main(["--root", str(good)], env=env) == 0


def test_this_book_is_unpublished_but_consistent():
    """Today's URL is the placeholder (so a published build fails until it is set), and every
    notebook's REPO_URL agrees with _config.yml."""
    assert check_publish.problems(ROOT, env={}) == [
        f"{ROOT / '_config.yml'}: repository.url is still the placeholder {PLACEHOLDER}; "
        "run tools/set_repo_url.py https://github.com/<owner>/<repo>"]


# ---- set_repo_url -------------------------------------------------------------------------------------

def test_set_repo_url_rewrites_every_copy_and_nothing_else(tmp_path, capsys):
    root = _book(tmp_path, PLACEHOLDER)
    before = {p: p.read_text() for p in (root / "_config.yml", root / "README.md", root / "book" / "01_x.ipynb")}
    assert set_repo_url.main(["https://github.com/ana/my-book", "--root", str(root), "--check"]) == 1
    assert {p: p.read_text() for p in before} == before  # --check writes nothing
    assert set_repo_url.main(["https://github.com/ana/my-book.git", "--root", str(root)]) == 0
    config = (root / "_config.yml").read_text()
    assert "  url: https://github.com/ana/my-book  # yours\n" in config and "# the one place" in config
    assert "colab.research.google.com/github/ana/my-book/blob/main/student/01_x.ipynb" in (root / "README.md").read_text()
    old_lines = before[root / "book" / "01_x.ipynb"].splitlines()
    new_lines = (root / "book" / "01_x.ipynb").read_text().splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(old_lines) == len(new_lines) and len(changed) == 2  # the REPO_URL line, the output's link
    assert 'REPO_URL = \\"https://github.com/ana/my-book\\"' in changed[0][1]
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "ana/my-book"}
    assert check_publish.problems(root, env) == []
    capsys.readouterr()
    assert set_repo_url.main(["https://github.com/ana/my-book", "--root", str(root), "--check"]) == 0  # idempotent
    assert set_repo_url.main(["https://gitlab.com/ana/my-book", "--root", str(root)]) == 2
    assert "is not https://github.com/<owner>/<repo>" in capsys.readouterr().err


def test_set_repo_url_on_a_copy_of_this_book(tmp_path):
    """On a copy of the real config, README and notebooks, the tool leaves a book check_publish accepts."""
    root = tmp_path / "book-copy"
    (root / "book").mkdir(parents=True)
    (root / "student").mkdir()
    for name in ("_config.yml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    for path in [*sorted((ROOT / "book").glob("*.ipynb"))[:3], *sorted((ROOT / "student").glob("*.ipynb"))[:2]]:
        shutil.copy(path, root / path.parent.name / path.name)
    assert set_repo_url.main(["https://github.com/ana/my-book", "--root", str(root)]) == 0
    assert check_publish.problems(root, {"GITHUB_REPOSITORY": "ana/my-book"}) == []
    assert "smoothdistill/smoothdistill-book/blob" not in (root / "README.md").read_text()
