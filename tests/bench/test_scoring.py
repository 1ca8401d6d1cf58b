"""The benchmark's scoring: a figure is compared by value, a sentence by containment."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scoring  # noqa: E402


def contains(text, golds):  # the evaluation data's check, reduced to plain containment
    return any(g.lower() in text.lower() for g in golds)


def test_gold_figures_are_told_apart_from_sentences():
    assert scoring.gold_figure("$1577.00") == 1577.0
    assert scoring.gold_figure("65.4%") == 65.4
    assert scoring.gold_figure("-3.7") == -3.7
    assert scoring.gold_figure("0.66") == 0.66
    assert scoring.gold_figure("The quick ratio has slightly improved from 0.67 to 0.69") is None
    assert scoring.gold_figure("Yes") is None


def test_numbers_ignore_years_glued_to_letters_and_citations():
    assert scoring.numbers("FY2018 capex was $1,577 million [1].") == [1577.0]
    assert not scoring.is_correct("The ratio is given in [1, 2].", ["1.00"], contains)
    assert scoring.numbers("It fell -3.7 points") == [-3.7]


def test_a_figure_is_right_within_one_percent():
    right = ["Capital expenditure was $1,577 million in FY2018 [1].", "1577.0", "about 1,580 [2]"]
    wrong = ["Capital expenditure was $1,457 million [1].", "FY1577 was a year", "It was 15.77"]
    for text in right:
        assert scoring.is_correct(text, ["$1577.00"], contains), text
    for text in wrong:
        assert not scoring.is_correct(text, ["$1577.00"], contains), text
    assert scoring.is_correct("Operating margin fell 3.7 points.", ["-3.7"], contains)
    assert not scoring.is_correct("The ratio was 0.7.", ["0.66"], contains)


def test_a_sentence_gold_is_scored_by_containment():
    gold = ["There are none"]
    assert scoring.is_correct("There are none registered.", gold, contains)
    assert not scoring.is_correct("None are registered.", gold, contains)
