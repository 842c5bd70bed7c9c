"""References: the page is generated from references.bib, labels are distinct, and every citation in
the chapters names an entry (``tools/references.py``).

``test_every_citation_in_the_chapters_has_an_entry`` is marked ``needs_notebook_update``: it fails
while a chapter still cites a label the page no longer has (e.g. ``Banos et al., 2014`` after the two
Banos 2014 works became 2014a and 2014b) until the chapter's markdown is updated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import references as refs  # noqa: E402

BIB = """
@misc{b1, author = {Banos, Oresti and Garcia, Rafael and Saez, Alejandro}, title = {{MHEALTH} Dataset},
       howpublished = {UCI Machine Learning Repository}, year = {2014}, doi = {10.24432/C5TW22}, note = {Licence CC BY 4.0}}
@inproceedings{b2, author = {Banos, Oresti and Garcia, Rafael and Villalonga, Claudia},
       title = {{mHealthDroid}: A Framework}, booktitle = {IWAAL 2014}, pages = {91--98}, year = {2014}}
@article{h, author = {Holm, Sture}, title = {A Simple Procedure}, journal = {Scand. J. Stat.}, volume = {6},
       number = {2}, pages = {65--70}, year = {1979}}
@misc{g, author = {Grill, Jean-Bastien and Altch{\\'e}, Florent}, title = {BYOL}, year = {2020}, eprint = {2006.07733},
       archiveprefix = {arXiv}, url = {https://arxiv.org/abs/2006.07733}}
"""


@pytest.fixture
def bib(tmp_path) -> Path:
    path = tmp_path / "references.bib"
    path.write_text(BIB)
    return path


def test_labels_are_distinct_and_entries_render(bib):
    entries = {e.key: e for e in refs.entries(bib)}
    assert entries["b1"].label == "Banos et al. (2014a)" and entries["b2"].label == "Banos et al. (2014b)"  # title order
    assert entries["h"].label == "Holm (1979)" and entries["g"].label == "Grill and Altché (2020)"
    assert entries["h"].text == "Sture Holm. *A Simple Procedure*. Scand. J. Stat. 6(2). pp. 65–70."
    assert entries["b1"].text == ("Oresti Banos, Rafael Garcia, Alejandro Saez. *MHEALTH Dataset*. UCI Machine Learning "
                                  "Repository. <https://doi.org/10.24432/C5TW22> Licence CC BY 4.0.")
    assert entries["g"].text.endswith("*BYOL*. arXiv:2006.07733. <https://arxiv.org/abs/2006.07733>")
    page = refs.page_text(bib)
    assert page.index("**Banos et al. (2014a).**") < page.index("**Banos et al. (2014b).**") < page.index("**Grill")


def test_citations_are_read_in_every_form():
    labels = {"Vu et al. (2025)", "Holm (1979)", "Nadeau and Bengio (2003)", "Analog Devices (2009)"}
    good = ("MTL-net ([Vu et al., 2025](references.md)), [Holm (1979)](references.md), "
            "([Nadeau and Bengio, 2003](../book/references.md)); the ADXL345 ([Analog Devices, 2009](references.md)); "
            "see [the references](references.md); Colab (2024 runtime)")
    assert refs.citation_problems(good, labels) == []
    bad = ("MHEALTH ([Banos et al., 2014](references.md)); a Hopfield network (Ramsauer et al., 2020, "
           "[arXiv 2008.02217](https://arxiv.org/abs/2008.02217)); Holm, 1980; Nadeau and Bengio (2004)")
    problems = refs.citation_problems(bad, labels)
    assert [p.split(": no entry ")[1] for p in problems] == [
        "'Banos et al. (2014)' in references.bib", "'Ramsauer et al. (2020)' in references.bib",
        "'Holm (1980)' in references.bib", "'Nadeau and Bengio (2004)' in references.bib"]
    assert refs.cite_label("Banos et al., 2014a") == "Banos et al. (2014a)" and refs.cite_label("the list") is None


def test_latex_fields_read_as_text():
    assert refs.latex_to_text("Altch{\\'e}, Varoquaux, Ga{\\\"e}l, Pavlovi{\\'c}") == "Altché, Varoquaux, Gaël, Pavlović"
    assert refs.latex_to_text("{ADXL345}: 3-Axis, $\\pm$2 g") == "ADXL345: 3-Axis, $\\pm$2 g"  # math stays


def test_the_references_page_is_generated_from_the_bib_file():
    assert refs.PAGE.read_text() == refs.page_text(), "book/references.md is stale: run tools/references.py"
    labels = [e.label for e in refs.entries()]
    assert len(labels) == len(set(labels))  # no two entries share a label


@pytest.mark.needs_notebook_update
def test_every_citation_in_the_chapters_has_an_entry():
    labels = {e.label for e in refs.entries()}
    problems = refs.check_citations(sorted((ROOT / "book").glob("*.ipynb")), labels)
    assert not problems, "\n".join(problems)
