"""Numbers in prose (``smoothdistill_lib.prose``): markdown display and formatting helpers."""

from __future__ import annotations

import numpy as np
import pytest

from smoothdistill_lib import prose


def test_say_displays_markdown_in_a_kernel(monkeypatch):
    shown = []
    import IPython
    import IPython.display

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    assert prose.say("  A fold has **1,234** steps; see [chapter 5](05_ema_teacher.ipynb).\n") is None
    (md,) = shown
    assert md._repr_markdown_() == "A fold has **1,234** steps; see [chapter 5](05_ema_teacher.ipynb)."
    assert repr(md) == md.text  # text/plain is the sentence itself, not an object address


def test_say_prints_outside_a_kernel(capsys):
    prose.say("plain $a^2$")
    assert capsys.readouterr().out == "plain $a^2$\n"


def test_markdown_needs_text():
    with pytest.raises(TypeError, match="must be a str"):
        prose.Markdown(3)
    assert prose.Markdown("x") == prose.Markdown("x") != prose.Markdown("y")


@pytest.mark.parametrize("value, digits, text", [
    (1234567, None, "1,234,567"), (np.int64(4000), None, "4,000"), (12.0, None, "12"), (0.999, None, "0.999"),
    (2 / 3, 2, "0.67"), (np.float32(1234.5), 1, "1,234.5"), (float("nan"), 2, "n/a"), ("n/a", None, "n/a"),
    (7, 1, "7.0"), (True, None, "True"),
])
def test_num(value, digits, text):
    assert prose.num(value, digits) == text


def test_pct_and_listing():
    assert prose.pct(0.1234) == "12.3%" and prose.pct(np.float64(1), 0) == "100%" and prose.pct(float("nan")) == "n/a"
    assert prose.listing([]) == "" and prose.listing(["a"]) == "a"
    assert prose.listing([1, 2, 3]) == "1, 2 and 3" and prose.listing("xy", last="or") == "x or y"


def test_span_is_one_number_when_the_counts_agree():
    from smoothdistill_lib.prose import span

    assert span([3, 3, 3]) == "3" and span([2, 3]) == "2-3" and span([1200, 15]) == "15-1,200"
    with pytest.raises(ValueError, match="no values"):
        span([])


def test_count_agrees_with_its_number():
    assert prose.count(1, "seed") == "1 seed" and prose.count(np.int64(3), "seed") == "3 seeds"
    assert prose.count(1000.0, "window") == "1,000 windows" and prose.count(0, "run") == "0 runs"
    assert prose.count(2, "repetition", "repetitions") == "2 repetitions" and prose.count(2, "child", "children") == "2 children"
    with pytest.raises(ValueError, match="2.5 is not a whole number"):
        prose.count(2.5, "seed")
