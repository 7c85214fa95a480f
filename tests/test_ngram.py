"""The n-gram baselines: hand-computed probabilities, normalisation over the vocabulary for every
context, and agreement with a naive dictionary implementation of interpolated modified
Kneser-Ney written here."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from grukit.apps.text.ngram import NGramModel, select_model, select_order, unigram_bits
from grukit.data.series import DataError


def test_unigram_bits_by_hand():
    # counts 0: 2, 1: 1, 2: 0 over n = 3, V = 3: p(0) = 3/6, p(2) = 1/6
    assert unigram_bits([0, 0, 1], [0, 2], 3) == pytest.approx((1 + math.log2(6)) / 2)


def test_bigram_by_hand():
    # x = 0 1 0 1 1 (start symbol S before it). Bigram raw counts: 01: 2, 10: 1, 11: 1 -> no
    # count of 3 or 4, so the fallback discounts 0.5, 1, 1.5. Unigram continuation counts:
    # 0 follows {S, 1}, 1 follows {0, 1}: 2 and 2; p1 = ((2-1) + (1+1) * 1/2) / 4 = 1/2 each.
    # p(1|0) = (2-1 + 1 * 1/2) / 2 = 3/4, p(0|0) = 1/4; p(.|1) = (1-0.5 + (0.5+0.5) * 1/2) / 2 = 1/2
    model = NGramModel(2, 2).fit([0, 1, 0, 1, 1])
    np.testing.assert_allclose(model.distribution(()), [0.5, 0.5])
    np.testing.assert_allclose(model.distribution([0]), [0.25, 0.75])
    np.testing.assert_allclose(model.distribution([1]), [0.5, 0.5])
    np.testing.assert_allclose(model.distribution([1, 1, 0]), [0.25, 0.75])  # only the last token counts
    # 0 1 1 0 scored from no context: p1(0), p(1|0), p(1|1), p(0|1)
    np.testing.assert_allclose(model.log2_probs([0, 1, 1, 0]), np.log2([0.5, 0.75, 0.5, 0.5]))
    assert model.bits([0, 1, 1, 0]) == pytest.approx((3 - math.log2(0.75)) / 4)
    assert model.bits([0], context=[1, 0]) == pytest.approx(2.0)  # p(0|0) = 1/4


def test_unigram_modified_discounts_by_hand():
    # raw counts 1, 2, 3, 4, 1, 0 (V = 6): n1 = 2, n2 = n3 = n4 = 1, Y = 2 / (2 + 2) = 1/2,
    # D1 = 1 - 2 Y 1/2 = 1/2, D2 = 2 - 3 Y = 1/2, D3 = 3 - 4 Y = 1; T = 11,
    # gamma = 2 D1 + D2 + 2 D3 = 3.5, p(w) = (c - D(c) + 3.5 / 6) / 11
    text = [0] + [1] * 2 + [2] * 3 + [3] * 4 + [4]
    model = NGramModel(1, 6).fit(text)
    assert model.orders_[0].discounts == pytest.approx((0.5, 0.5, 1.0))
    kept = np.array([0.5, 1.5, 2.0, 3.0, 0.5, 0.0])
    np.testing.assert_allclose(model.distribution(()), (kept + 3.5 / 6) / 11)


@pytest.mark.parametrize("order,vocab_size,length", [(1, 4, 50), (3, 3, 200), (4, 3, 400), (3, 5, 30)])
def test_probabilities_sum_to_one_for_every_context(order, vocab_size, length):
    rng = np.random.default_rng(order * 10 + vocab_size)
    text = rng.integers(0, vocab_size - 1, length)  # the last token never occurs in training
    model = NGramModel(order, vocab_size).fit(text)
    for k in range(order + 1):
        for context in itertools.product(range(vocab_size), repeat=k):
            p = model.distribution(context)
            assert (p > 0).all()
            assert p.sum() == pytest.approx(1.0, abs=1e-12), context


# -- an independent, naive implementation of the same smoothing -------------------------------

FALLBACK = (0.5, 1.0, 1.5)


def naive_discounts(counts: dict) -> tuple:
    n = [sum(1 for c in counts.values() if c == r) for r in (1, 2, 3, 4)]
    if min(n) == 0:
        return FALLBACK
    y = n[0] / (n[0] + 2 * n[1])
    d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    return d if min(d) > 0 else FALLBACK


class NaiveKneserNey:
    """Interpolated modified Kneser-Ney with dictionaries of tuples, straight from the equations."""

    def __init__(self, train, order, vocab_size):
        train = [int(t) for t in train]
        self.N, self.V = order, vocab_size
        self.counts = {}
        for m in range(1, order):
            left = defaultdict(set)
            for i in range(m - 1, len(train)):
                left[tuple(train[i - m + 1 : i + 1])].add(train[i - m] if i >= m else "start")
            self.counts[m] = {g: len(s) for g, s in left.items()}
        self.counts[order] = Counter(
            tuple(train[i - order + 1 : i + 1]) for i in range(order - 1, len(train))
        )
        self.D = {m: naive_discounts(c) for m, c in self.counts.items()}

    def prob(self, w, h):
        m = len(h) + 1
        lower = self.prob(w, h[1:]) if h else 1.0 / self.V
        D = self.D[m]

        def discount(c):
            return 0.0 if c == 0 else D[min(c, 3) - 1]

        row = {g[-1]: c for g, c in self.counts[m].items() if g[:-1] == h}
        total = sum(row.values())
        if total == 0:
            return lower
        gamma = sum(discount(c) for c in row.values())
        c = row.get(w, 0)
        return (c - discount(c) + gamma * lower) / total

    def log2_probs(self, x):
        return np.array(
            [math.log2(self.prob(w, tuple(x[max(0, t - self.N + 1) : t]))) for t, w in enumerate(x)]
        )


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_matches_naive_implementation(order):
    rng = np.random.default_rng(order)
    V = 12
    # a Markov chain, so that counts of every size occur and the fitted discounts are used
    trans = rng.dirichlet(np.full(V, 0.3), size=V)
    x = [0]
    for _ in range(1499):
        x.append(int(rng.choice(V, p=trans[x[-1]])))
    train, held = np.array(x[:1400]), x[1400:]
    model = NGramModel(order, V).fit(train)
    naive = NaiveKneserNey(train, order, V)
    if order >= 2:
        assert naive.D[order] != FALLBACK  # the formula, not the fallback, is tested
    for m in range(1, order + 1):
        assert model.orders_[m - 1].discounts == pytest.approx(naive.D[m])
    np.testing.assert_allclose(model.log2_probs(held), naive.log2_probs(held), rtol=1e-12)
    # a context: the training text's tail
    with_context = naive.log2_probs([int(t) for t in train[-10:]] + held)[10:]
    np.testing.assert_allclose(model.log2_probs(held, context=train), with_context, rtol=1e-12)


def test_select_order_scores_each_order_as_its_own_model():
    rng = np.random.default_rng(5)
    train, valid = rng.integers(0, 3, 600), rng.integers(0, 3, 100)
    best, scores = select_order(train, valid, 3, orders=[3, 1, 2])
    assert sorted(scores) == [1, 2, 3]
    for order, bits in scores.items():
        assert bits == pytest.approx(NGramModel(order, 3).fit(train).bits(valid), rel=1e-12)
    assert scores[best] == min(scores.values())


def test_select_model_returns_the_best_order_fitted_as_fit_would():
    rng = np.random.default_rng(6)
    train, valid, test = rng.integers(0, 4, 800), rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    model, scores = select_model(train, valid, 4, orders=[1, 2, 3, 4])
    assert scores == select_order(train, valid, 4, orders=[1, 2, 3, 4])[1]
    assert model.order == min(scores, key=lambda o: (scores[o], o))
    refit = NGramModel(model.order, 4).fit(train)  # counted again, for that order alone
    np.testing.assert_allclose(model.log2_probs(test), refit.log2_probs(test), rtol=1e-12)


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match=r"in \[0, 3\), got 3"):
        NGramModel(2, 3).fit([0, 1, 3])
    with pytest.raises(DataError, match="order"):
        NGramModel(0, 3)
    with pytest.raises(DataError, match="not fitted"):
        NGramModel(2, 3).bits([0])
    with pytest.raises(DataError, match="1-D integer"):
        NGramModel(2, 3).fit(np.array([0.5, 1.0]))
    with pytest.raises(DataError, match="orders"):
        select_order([0, 1], [0], 2, orders=[])
