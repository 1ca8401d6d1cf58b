"""When to answer: one calibrated decision from the evidence signals, not the model's mood.

A logistic model over three signals a user can inspect on any answer (``Answer.signals``):

* ``top_similarity``: cosine of the question and the best retrieved passage;
* ``best_cosine``: cosine of the question and the best single evidence sentence;
* ``best_coverage``: the share of the question's key terms (weighted by rarity) found in the
  best evidence line and the sentence before it.

The weights are fitted by ``python bench/quality.py --calibrate`` on one half of the SQuAD 2.0
answerable/unanswerable questions plus questions about other collections (FinanceBench,
Cranfield) asked of the SQuAD index, and the README reports the other half. Below
``Settings.abstain_below`` (a probability) Sprig abstains without running the model.
"""

from __future__ import annotations

import math

FEATURES = ("top_similarity", "best_cosine", "best_coverage")
# fitted by bench/quality.py --calibrate (see the README's Quality section): 760 questions
# (309 answerable, 288 adversarial unanswerable, 163 off-collection), each kind weighted equally
WEIGHTS = (3.564, 2.36, 2.432)
BIAS = -5.326
# the default threshold: at 0.25 the reporting half had 9.6% false refusals (303 answerable),
# abstained on 100% of 191 off-collection and 24% of 275 adversarial unanswerable questions
DEFAULT_THRESHOLD = 0.25


def features(evidence) -> tuple[float, ...]:
    return (evidence.top_similarity, evidence.best_cosine, evidence.best_coverage)


def probability(values, weights=WEIGHTS, bias=BIAS) -> float:
    z = bias + sum(w * x for w, x in zip(weights, values, strict=True))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def answerable_probability(evidence) -> float:
    if not evidence.lines:
        return 0.0
    return probability(features(evidence))
