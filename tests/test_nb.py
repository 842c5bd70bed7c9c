"""Notebook helpers (``smoothdistill_lib.nb``), the chapter tools, and the book's conventions.

The convention tests read every committed chapter ``book/NN_*.ipynb`` (JSON only, nothing runs):
set-up cell first, provenance banner as first output, >= 2 cells tagged ``nbval-check-output``,
GPU tags paired, no error output, < 2 MB, ``_toc.yml`` lists exactly the chapters that exist. The
portability of their markdown is tested in ``tests/test_portable.py``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import runpy
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from smoothdistill_lib import nb

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))

import check_widgets_offline  # noqa: E402
import execute_chapter  # noqa: E402
import new_chapter  # noqa: E402


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


# ---- glue ----------------------------------------------------------------------------------------

def test_glue_uses_myst_nb_and_glues_numpy_scalars_as_python_numbers(monkeypatch):
    import myst_nb
    from IPython.core.formatters import format_display_data
    from myst_nb.core.variables import format_plain_text

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    assert nb.glue("n_windows", np.int64(143023)) is None  # no execute_result of its own
    name, value, display = calls[0]
    assert (name, display) == ("n_windows", False) and type(value) is int
    # what the book's {glue:text}`n_windows:,d` role then renders from the text/plain form
    text = format_display_data(value)[0]["text/plain"]
    assert format_plain_text(text, ",d") == "143,023"
    # a raw numpy scalar would not format (its repr is 'np.int64(143023)')
    raw = format_display_data(np.int64(143023))[0]["text/plain"]
    with pytest.raises(ValueError):
        format_plain_text(raw, ",d")


def test_glue_fallback_without_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import fails, as on Colab
    shown = []
    monkeypatch.setattr(nb, "_display", shown.append)
    nb.glue("a", 1.5)
    assert shown == []
    nb.glue("b", "text", display=True)
    assert shown == ["text"]


@pytest.mark.parametrize("bad", ["", "two words", "1x", None])
def test_glue_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="glue name"):
        nb.glue(bad, 1)


# ---- banner --------------------------------------------------------------------------------------

def test_provenance_table_rows_and_flags():
    prov = {"mode": "demo", "device": "cpu: AMD EPYC", "cpu_count": 2, "commit": "abc1234", "dirty": True,
            "library": "0.1.0", "python": "3.11.7", "torch": "2.13.0", "numpy": "2.4.6",
            "timestamp": "2025-01-01T00:00:00+00:00",
            "data": {"dataset": "wisdm", "subjects": [1600, 1604], "protocol": "paper"}}
    t = nb.provenance_table(prov).set_index("field")["value"]
    assert list(t.index) == ["mode", "device", "data", "library", "software", "date (UTC)"]
    assert t["device"] == "cpu: AMD EPYC (2 cores)"
    assert t["data"] == "dataset: wisdm; subjects: 1600, 1604; protocol: paper"
    assert t["library"] == "smoothdistill_lib 0.1.0, commit abc1234 + local changes"
    clean = nb.provenance_table({**prov, "dirty": False, "commit": None}).set_index("field")["value"]
    assert clean["library"] == "smoothdistill_lib 0.1.0, commit unknown"


def test_banner_shows_markdown_with_mode_and_data(monkeypatch):
    shown = []
    monkeypatch.setattr(nb, "_display", shown.append)
    prov = nb.banner("quick", data={"dataset": "sleepsim", "subjects": 4})
    assert prov["mode"] == "quick" and prov["data"] == {"dataset": "sleepsim", "subjects": 4}
    (md,) = shown
    text = md.data
    assert text.startswith("<details>\n<summary>Provenance of the outputs: quick mode · ") and text.endswith("\n\n</details>")
    assert text.count("\n- ") == 4  # data, library, software, date: inside the collapsed block
    assert "\n- data: dataset: sleepsim; subjects: 4\n" in text
    assert "smoothdistill\\_lib" in text  # escaped for Markdown
    with pytest.raises(ValueError, match="unknown run mode"):
        nb.banner("fast")


# ---- setup and timings ---------------------------------------------------------------------------

def test_setup_applies_the_book_style_and_returns_the_mode():
    import matplotlib as mpl

    from smoothdistill_lib import plots

    m = nb.setup("quick")
    assert m.name == "quick"
    assert mpl.rcParams["figure.dpi"] == 150 and mpl.rcParams["savefig.dpi"] >= 150
    assert mpl.rcParams["figure.figsize"][0] <= plots.MAX_WIDTH
    assert pd.get_option("display.max_colwidth") is None


def test_timings_round_trip_and_table(tmp_path):
    path = tmp_path / "book" / "_timings.json"
    assert nb.load_timings(path) == {}
    nb.record_timing("01_x", "quick", "cpu", 12.34, path=path, device_name="cpu: test")
    nb.record_timing("01_x", "demo", "cpu", 200, path=path)
    data = json.loads(path.read_text())
    assert data["01_x"]["cpu"]["quick"] == {"seconds": 12.3, "device_name": "cpu: test"}
    t = nb.time_table("01_x", path=path)
    assert list(t.index) == ["quick", "demo"] and list(t.columns) == ["CPU"]  # measured modes only
    assert t.loc["quick", "CPU"] == "12 s" and t.loc["demo", "CPU"] == "3.3 min"
    nb.record_timing("08_results", "demo", "cpu", 30, path=path)
    t8 = nb.time_table("08_results", path=path)  # a training chapter: full mode says why it is missing
    assert list(t8.index) == ["demo", "full"] and t8.loc["full", "CPU"] == nb.NEEDS_GPU
    nb.record_timing("08_results", "full", "gpu", 4000, path=path)
    t8 = nb.time_table("08_results", path=path)
    assert list(t8.columns) == ["CPU", "GPU"] and t8.loc["full", "GPU"] == "66.7 min" and t8.loc["demo", "GPU"] == "–"
    assert nb.NOT_MEASURED not in t8.to_numpy()
    assert nb.time_table("never_run", path=path).empty


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "fast"}, "mode"), ({"device": "tpu"}, "device"), ({"seconds": -1}, "seconds"),
])
def test_record_timing_rejects_bad_input(tmp_path, kwargs, match):
    args = {"chapter": "01_x", "mode": "quick", "device": "cpu", "seconds": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        nb.record_timing(path=tmp_path / "t.json", **args)


def test_corrupt_timings_file_names_the_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        nb.load_timings(path)


def test_format_seconds():
    assert [nb.format_seconds(s) for s in (0.4, 89, 90, 5399, 5400)] == ["0 s", "89 s", "1.5 min", "90.0 min", "1.5 h"]
    assert nb.format_seconds(None) == nb.NOT_MEASURED


# ---- tools ---------------------------------------------------------------------------------------

def _nb(cells):
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def test_check_notebook_finds_errors_missing_banner_and_size():
    banner = nbformat.v4.new_output("display_data", data={"text/markdown": "**Provenance of the outputs below**"})
    err = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])
    good = _nb([nbformat.v4.new_code_cell("x", outputs=[banner])])
    assert execute_chapter.check_notebook(good, 1000) == []
    bad = _nb([nbformat.v4.new_code_cell("x", outputs=[err])])
    problems = execute_chapter.check_notebook(bad, 3_000_000)
    assert any("error output ValueError: boom" in p for p in problems)
    assert any("provenance banner" in p for p in problems)
    assert any("MB" in p for p in problems)


def _restore_environment_after(monkeypatch):
    """execute_chapter.main sets the chapter's environment in this process (run mode, no progress
    bars); the test's monkeypatch puts the variables back, so later tests in this worker see none."""
    for name in ("SMOOTHDISTILL_MODE", "SMOOTHDISTILL_PROGRESS", "SMOOTHDISTILL_DATA"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # registered with monkeypatch (which removes it again at the end), then unset as before
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)


def test_execute_chapter_runs_records_and_refreshes_timing_cells(tmp_path, monkeypatch):
    """One real kernel run (a few seconds): mode reaches the kernel, timing cell sees this run."""
    timings = tmp_path / "_timings.json"
    monkeypatch.setattr(nb, "timings_path", lambda root=None: timings)
    _restore_environment_after(monkeypatch)
    setup = nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom smoothdistill_lib import nb")
    cells = [
        setup,
        nbformat.v4.new_code_cell("import os\nfrom IPython.display import Markdown\n"
                                  "Markdown('**Provenance** ' + os.environ['SMOOTHDISTILL_MODE'])"),
        nbformat.v4.new_code_cell(f"nb.time_table('t01', path={str(timings)!r})"),
        nbformat.v4.new_code_cell("raise RuntimeError('never runs')"),
    ]
    cells[2].metadata["tags"] = ["chapter-timings"]
    cells[3].metadata["tags"] = ["skip-execution", "nbval-skip"]
    path = tmp_path / "t01.ipynb"
    nbformat.write(_nb(cells), path)
    assert execute_chapter.main([str(path), "--mode", "quick", "--timeout", "120"]) == 0
    out = nbformat.read(path, as_version=4)
    assert "quick" in out.cells[1].outputs[0]["data"]["text/markdown"]
    assert "quick" in out.cells[2].outputs[0]["data"]["text/plain"]  # refreshed after recording
    assert out.cells[3].outputs == []
    assert "quick" in json.loads(timings.read_text())["t01"]["cpu"]


def test_execute_chapter_writes_nothing_on_error(tmp_path, capsys, monkeypatch):
    _restore_environment_after(monkeypatch)
    cells = [nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "t02.ipynb"
    nbformat.write(_nb(cells), path)
    before = path.read_text()
    assert execute_chapter.main([str(path), "--mode", "quick", "--no-record"]) == 1
    assert path.read_text() == before
    assert "nothing written" in capsys.readouterr().err
    assert execute_chapter.main([str(tmp_path / "missing.ipynb")]) == 2


def test_new_chapter_from_template(tmp_path):
    out = new_chapter.new_chapter("04_demo", "A demo chapter", book_dir=tmp_path)
    notebook = nbformat.read(out, as_version=4)
    text = "\n".join(c.source for c in notebook.cells)
    assert notebook.cells[0].source.startswith("# A demo chapter")
    assert "{{" not in text and 'nb.time_table("04_demo")' in text
    assert "Template note" not in notebook.cells[0].source  # the template's note about itself is dropped
    assert all(c.outputs == [] for c in notebook.cells if c.cell_type == "code")
    with pytest.raises(FileExistsError):
        new_chapter.new_chapter("04_demo", "again", book_dir=tmp_path)
    with pytest.raises(ValueError, match="two digits"):
        new_chapter.new_chapter("mtlnet", "x", book_dir=tmp_path)


def test_widget_offline_check_flags_cdn_and_missing_local_scripts(tmp_path):
    state = '<script type="application/vnd.jupyter.widget-state+json">{}</script>'
    local = '<script src="../_static/require.js?v=1"></script><script src="../_static/embed-amd.js?v=2"></script>'
    cdn = ('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>'
           '<script src="https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"></script>')
    (tmp_path / "book").mkdir()
    good, bad, plain = tmp_path / "book" / "good.html", tmp_path / "book" / "bad.html", tmp_path / "plain.html"
    good.write_text(state + local)
    bad.write_text(state + cdn)
    plain.write_text(cdn)  # no widget state: not a widget page
    assert check_widgets_offline.widget_pages(tmp_path) == [bad, good]
    assert check_widgets_offline.static_problems(good) == []
    problems = check_widgets_offline.static_problems(bad)
    assert sum("no local _static/" in p for p in problems) == 2 and sum("from a CDN" in p for p in problems) == 2
    assert check_widgets_offline.main([str(tmp_path)]) == 1
    bad.unlink()
    # a page without widgets may load no remote script either (MathJax from the CDN, say)
    assert check_widgets_offline.remote_scripts(plain) == [
        "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js",
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js"]
    assert check_widgets_offline.main([str(tmp_path)]) == 1
    plain.write_text('<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
                     '</script>')
    assert check_widgets_offline.main([str(tmp_path)]) == 1
    plain.write_text('<script defer="defer" src="_static/mathjax/es5/tex-mml-chtml.js"></script>')
    assert check_widgets_offline.remote_scripts(plain) == []
    assert check_widgets_offline.main([str(tmp_path)]) == 0


def test_mathjax_is_vendored_and_wired():
    """The built pages load MathJax from _static (html_static_path + mathjax_path), with its fonts
    and TeX extensions beside it, where MathJax looks for them."""
    sphinx = _config()["sphinx"]["config"]
    static = [ROOT / p for p in sphinx["html_static_path"]]
    script = [d / sphinx["mathjax_path"] for d in static if (d / sphinx["mathjax_path"]).is_file()]
    assert len(script) == 1 and not sphinx["mathjax_path"].startswith(("http", "/"))
    es5 = script[0].parent
    assert len(list((es5 / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))) >= 20
    assert (es5 / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()
    # the vendored file is the one its README documents (npm mathjax 3.2.2)
    digest = hashlib.sha256(script[0].read_bytes()).hexdigest()
    assert f"`{digest}`" in (ROOT / "book" / "_mathjax" / "README.md").read_text()


# ---- book configuration --------------------------------------------------------------------------

def test_widget_scripts_are_vendored_and_wired():
    sphinx = _config()["sphinx"]["config"]
    static = [ROOT / p for p in sphinx["html_static_path"]]
    scripts = sphinx["nb_ipywidgets_js"]
    assert set(scripts) == {"require.js", "embed-amd.js"}
    for name in scripts:
        assert "://" not in name  # no CDN
        assert any((d / name).is_file() and (d / name).stat().st_size > 10_000 for d in static), name
    assert all(d.name != "_static" for d in static)


def test_toc_lists_exactly_the_chapters_that_exist():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part.get("chapters") or []]
    assert all((ROOT / f).with_suffix(".ipynb").exists() or (ROOT / f).with_suffix(".md").exists() for f in files)
    listed = sorted(f for f in files if re.match(r"book/\d\d_", f))
    assert listed == [f"book/{p.stem}" for p in CHAPTERS], "_toc.yml must list every book/NN_*.ipynb, and no other"


def test_pytest_collects_only_numbered_chapters():
    globs = runpy.run_path(str(ROOT / "conftest.py"))["collect_ignore_glob"]
    ignored = lambda rel: any(fnmatch.fnmatch(str(ROOT / rel), str(ROOT / g)) for g in globs)  # noqa: E731
    assert ignored("book/_template.ipynb") and ignored("book/notes.ipynb")
    assert not ignored("book/01_preface.ipynb") and not ignored("tests/test_nb.py")


def test_template_setup_cell_uses_the_repository_url():
    template = nbformat.read(BOOK / "_template.ipynb", as_version=4)
    setup = next(c for c in template.cells if c.cell_type == "code").source
    assert f'REPO_URL = "{_config()["repository"]["url"]}"' in setup


# ---- chapter conventions (committed notebooks) ---------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_conventions(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    template_setup = next(c for c in nbformat.read(BOOK / "_template.ipynb", as_version=4).cells
                          if c.cell_type == "code").source
    # the set-up cell: first code cell, the template's apart from the EXTRAS line
    differ = [a for a, b in zip(code[0].source.splitlines(), template_setup.splitlines(), strict=False) if a != b]
    assert all(line.startswith("EXTRAS =") for line in differ), \
        f"the first code cell must be the template's set-up cell (only EXTRAS may differ): {differ}"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, "no outputs: execute it with tools/execute_chapter.py before committing"
    assert "Provenance" in outputs[0].get("data", {}).get("text/markdown", ""), \
        "the first output must be the provenance banner (nb.banner)"
    errors = [o.get("ename") for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"error outputs stored: {errors}"
    n_check = sum("nbval-check-output" in c.metadata.get("tags", []) for c in code)
    assert n_check >= 2, f"{n_check} cell(s) tagged nbval-check-output; at least 2 needed"
    assert not any("NBVAL_CHECK_OUTPUT" in c.source for c in code), "use the cell tag nbval-check-output"
    for c in code:
        tags = set(c.metadata.get("tags", []))
        assert ("nbval-skip" in tags) == ("skip-execution" in tags), \
            f"GPU-only cells need both tags nbval-skip and skip-execution: {c.source[:80]!r}"
    timing = [c for c in code if "chapter-timings" in c.metadata.get("tags", [])]
    assert len(timing) == 1 and f'nb.time_table("{path.stem}")' in timing[0].source, \
        f'one cell tagged chapter-timings with nb.time_table("{path.stem}") is needed'
    assert path.stat().st_size < 2_000_000, f"{path.stat().st_size / 1e6:.2f} MB >= 2 MB"
    if any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs):
        assert notebook.metadata.get("widgets"), "widgets shown but no widget state stored"


def test_concurrent_timing_records_are_not_lost(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "t.json"
    jobs = [(f"{i:02d}_x", m) for i in range(8) for m in ("quick", "demo")]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job: nb.record_timing(job[0], job[1], "cpu", 1.0, path=path), jobs))
    data = nb.load_timings(path)
    assert sorted((c, m) for c in data for m in data[c]["cpu"]) == sorted(jobs)


def test_grid_when_present_says_one_line_when_data_are_absent_and_runs_when_present(tmp_path, monkeypatch, capsys):
    from smoothdistill_lib import datasets, experiment
    from tests.rawfixtures import write_mhealth_tree

    data, repo = tmp_path / "data", tmp_path / "repo"
    (repo / "configs").mkdir(parents=True)
    experiment.write_config(experiment.Experiment(name="mh", datasets=["mhealth"], protocols=["paper"],
                                             methods=["multitask"]), repo / "configs" / "mh.yaml")
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(data))
    monkeypatch.setenv("SMOOTHDISTILL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(datasets, "search_dirs", lambda: [data])
    assert nb.grid_when_present("mh", "quick", root=repo) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("mh runs skipped: mhealth is not under")
    assert nb.grid_when_present("absent", "quick", root=repo) is None
    assert "absent.yaml is not here" in capsys.readouterr().out

    write_mhealth_tree(data, subjects=range(1, 11), blocks=[(1, 600), (4, 600), (9, 600)])
    recs = nb.grid_when_present("mh", "quick", root=repo)
    assert recs.name == "mh" and recs.mode == "quick" and len(recs.records) == 1
    assert set(recs.df["dataset"]) == {"mhealth"}
    files = sorted((tmp_path / "results" / "mh" / "runs").glob("*.json"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = nb.grid_when_present("mh", "quick", root=repo)  # resumes: nothing is trained twice
    assert set(again.records) == set(recs.records) and [f.stat().st_mtime_ns for f in files] == stamps
