"""How an answer is scored against a gold answer.

SQuAD's gold answers are short spans, so "the gold span is contained in the answer after SQuAD
normalisation" is fair. FinanceBench's are written by analysts: a third of them are a single
figure ("$1577.00", "65.4%", "0.66"), which normalisation turns into digits ("157700") that an
answer giving the same figure as "$1,577 million" never contains. A figure is therefore
compared by value: an answer is right when one of its numbers is the gold figure to within
1%. Gold answers that are sentences keep containment, which an answer in other words rarely
meets: their figure is a lower bound.
"""

from __future__ import annotations

import re

_FIGURE = re.compile(r"\s*\$?\s*(-?[0-9][0-9,]*\.?[0-9]*|-?\.[0-9]+)\s*%?\s*")
_CITATION = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_NUMBER = re.compile(r"(?<![\w.])-?\$?\s?([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(\.[0-9]+)?")


def gold_figure(gold: str) -> float | None:
    """The value of a gold answer that is one figure and nothing else, else None."""
    match = _FIGURE.fullmatch(gold)
    return float(match.group(1).replace(",", "")) if match else None


def numbers(text: str) -> list[float]:
    """Each number written in ``text`` ("1,577", "-3.7", "$8.70"; not the 2018 of "FY2018",
    not a citation marker)."""
    out = []
    for match in _NUMBER.finditer(_CITATION.sub(" ", text)):
        value = float(match.group(1).replace(",", "") + (match.group(2) or ""))
        out.append(-value if match.group(0).startswith("-") else value)
    return out


def figure_matches(text: str, gold: float) -> bool:
    """A number in ``text`` within 1% of ``gold``. Signs are not compared: a gold "-3.7" is
    answered by "fell 3.7%", and an outflow of "(1,577)" by "-1,577"."""
    return any(abs(abs(v) - abs(gold)) <= 0.01 * abs(gold) + 1e-9 for v in numbers(text))


def is_correct(text: str, golds: list[str], contains) -> bool:
    """``contains`` is the evaluation data's SQuAD-normalised containment check."""
    for gold in golds:
        value = gold_figure(gold)
        if value is not None and figure_matches(text, value):
            return True
    return bool(contains(text, golds))
