"""Numbers in the chapters' prose: a sentence computed in a code cell, shown as markdown.

A chapter never types a number that the library computes. The sentence that holds such numbers is
built in a short code cell (tagged ``remove-input``, so the HTML book shows only the sentence) and
displayed with :func:`say`, as a ``text/markdown`` output: the HTML book (myst-nb parses it as
MyST, so ``$math$`` and links to other chapters work), JupyterLab and Colab all render it.

    say(f"A fold has **{num(steps)}** optimizer steps, so $a^{{{steps}}}$ = {a ** steps:.3f}.")

Formatting helpers: :func:`num` (thousands separators, fixed decimals), :func:`pct` (a share as a
percentage), :func:`listing` ("a, b and c"), :func:`span` ("3" or "2-3"), :func:`count` ("1 seed",
"3 seeds"). Plain CommonMark only: no MyST roles or directives.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["say", "num", "pct", "listing", "span", "count", "Markdown"]


class Markdown:
    """Markdown text with a ``text/markdown`` display form (IPython's, without needing IPython)."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"markdown text must be a str, got {type(text).__name__}")
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:  # text/plain: what a plain console (or nbval's text compare) shows
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Markdown) and other.text == self.text


def say(text: str) -> None:
    """Display ``text`` as markdown under the cell (printed where no IPython display exists).

    Returns None, so a ``say(...)`` ending a cell adds no second (``Out[...]``) output.
    """
    md = Markdown(text.strip())
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with every notebook front end
        print(md.text)
        return
    if get_ipython() is None:  # plain python (scripts, tests): the text itself
        print(md.text)
        return
    display(md)


def num(x: Any, digits: int | None = None) -> str:
    """A number for prose: ``12,345``; floats with ``digits`` decimals (default: as short as exact).

    Integers (also numpy integers and integral floats when ``digits`` is None) get thousands
    separators; ``nan`` reads "n/a". Non-numbers are returned as ``str(x)``.
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Number):
        return str(x)
    if isinstance(x, numbers.Integral):
        return f"{int(x):,d}" if digits is None else f"{int(x):,.{digits}f}"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if digits is None:
        return f"{int(x):,d}" if x.is_integer() and abs(x) < 1e15 else f"{x:,g}"
    return f"{x:,.{digits}f}"


def pct(share: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: ``pct(0.1234) == '12.3%'``; ``nan`` reads "n/a"."""
    x = float(share)
    return "n/a" if math.isnan(x) else f"{100 * x:.{digits}f}%"


def listing(items: Iterable[Any], last: str = "and") -> str:
    """``'a, b and c'`` (``last``: the word before the final item); ``''`` for no items."""
    words = [str(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def span(values: Iterable[Any]) -> str:
    """The range of whole numbers such as run counts, ``'2-3'``, or one number, ``'3'``, when all are
    equal (``'3-3 seeds'`` reads as a typo)."""
    vals = [int(v) for v in values]
    if not vals:
        raise ValueError("span: no values")
    lo, hi = min(vals), max(vals)
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def count(n: Any, noun: str, plural: str | None = None) -> str:
    """``n`` whole things with the noun in agreement: ``'1 seed'``, ``'3 seeds'``, ``'1,000 windows'``
    (``plural`` for an irregular noun: ``count(2, 'fold', 'folds')``). Never ``'seed(s)'``."""
    k = int(n)
    if k != n:
        raise ValueError(f"count: {n!r} is not a whole number")
    return f"{k:,} {noun if k == 1 else (plural or noun + 's')}"
