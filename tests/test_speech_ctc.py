"""CTC decoding (best path, prefix beam search) against hand-worked frames and a brute-force
oracle that enumerates every alignment; word error rate on hand-counted cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from grukit.apps.speech.ctc import BLANK, beam_decode, error_rates, frame_labels, greedy_decode
from grukit.data.series import DataError

A, B_ = 1, 2  # two labels; 0 is the blank


def _one_hot_frames(tokens, V=3, p=0.9):
    """log probabilities with ``p`` on the given token of each frame and the rest shared."""
    y = np.full((len(tokens), V), (1 - p) / (V - 1))
    y[np.arange(len(tokens)), tokens] = p
    return np.log(y)


def _collapse(path):
    out, prev = [], None
    for k in path:
        if k != prev and k != BLANK:
            out.append(k)
        prev = k
    return tuple(out)


def _oracle(lp):
    """(the most probable labelling, its log probability) by summing the probability of every
    one of the V**T alignments into its collapsed labelling."""
    T, V = lp.shape
    p = np.exp(lp)
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(V), repeat=T):
        prob = math.prod(p[t, k] for t, k in enumerate(path))
        key = _collapse(path)
        totals[key] = totals.get(key, 0.0) + prob
    best = max(totals, key=totals.get)
    return list(best), math.log(totals[best]), totals


def test_greedy_merges_repeats_and_drops_blanks():
    # a a _ a b b -> a a b
    lp = _one_hot_frames([A, A, BLANK, A, B_, B_])
    assert greedy_decode(lp) == [A, A, B_]
    assert frame_labels(lp).tolist() == [A, A, BLANK, A, B_, B_]
    # _ a a _ _ b _ -> a b; the length cuts the frames
    lp = _one_hot_frames([BLANK, A, A, BLANK, BLANK, B_, BLANK])
    assert greedy_decode(lp) == [A, B_]
    assert greedy_decode(lp, length=3) == [A]
    assert greedy_decode(lp, length=0) == []


def test_greedy_accepts_torch():
    lp = torch.from_numpy(_one_hot_frames([A, BLANK, A, B_])).float()
    assert greedy_decode(lp) == [A, A, B_]


@pytest.mark.parametrize(
    "seed, T, V",
    [
        (s, T, V)
        for s, (T, V) in enumerate(
            [(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (6, 3), (3, 4), (4, 4), (5, 4), (6, 4)] * 2
        )
    ],
)
def test_wide_beam_finds_the_most_probable_labelling(seed, T, V):
    rng = np.random.default_rng(seed)
    # peaked random distributions so that labellings differ in probability clearly
    logits = rng.normal(scale=1.5, size=(T, V))
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    best, logp, totals = _oracle(lp)
    ranked = sorted(totals.values(), reverse=True)
    if len(ranked) > 1 and ranked[0] - ranked[1] < 1e-12:
        pytest.skip("a tie between labellings")  # never happens for these seeds; keeps the test exact
    got, score = beam_decode(lp, beam_width=4000)
    assert got == best
    assert score == pytest.approx(logp, abs=1e-9)


def test_beam_log_probability_is_the_labellings_total():
    # every labelling found with a wide beam scores its own total, not the best path's
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(5, 3))
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    _, _, totals = _oracle(lp)
    assert sum(totals.values()) == pytest.approx(1.0, abs=1e-12)
    got, score = beam_decode(lp, beam_width=4000)
    assert score == pytest.approx(math.log(totals[tuple(got)]), abs=1e-9)


def test_beam_beats_greedy_when_paths_share_a_labelling():
    # Two frames, tokens (blank, a). Each frame: blank 0.6, a 0.4. The best path is "_ _" ->
    # nothing (p = 0.36), but "a" has three paths: a a, a _, _ a = 0.16 + 0.24 + 0.24 = 0.64.
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy_decode(lp) == []
    labels, score = beam_decode(lp, beam_width=4)
    assert labels == [1]
    assert score == pytest.approx(math.log(0.64), abs=1e-12)


def test_repeated_label_needs_a_blank_between():
    # a _ a : "a a" only through the blank; "a a a" frames collapse to one "a"
    lp = np.log(np.array([[0.01, 0.98, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01]]))
    labels, score = beam_decode(lp, beam_width=16)
    assert labels == [A, A]
    best, logp, _ = _oracle(lp)
    assert labels == best and score == pytest.approx(logp, abs=1e-9)
    lp = np.log(np.array([[0.01, 0.98, 0.01]] * 3))
    assert beam_decode(lp)[0] == [A]


def test_beam_handles_impossible_tokens_and_length():
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.7, 0.3, 0.0]]))
    assert beam_decode(lp, beam_width=2) == ([A, B_], pytest.approx(math.log(0.7)))
    assert beam_decode(lp, length=3) == ([A, B_], pytest.approx(0.0))
    assert beam_decode(lp, length=0) == ([], 0.0)


def test_beam_of_one_is_greedy_like_on_clear_frames():
    lp = _one_hot_frames([A, A, BLANK, A, B_, B_, BLANK, B_], p=0.95)
    assert beam_decode(lp, beam_width=1)[0] == greedy_decode(lp) == [A, A, B_, B_]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(4), "(T, V)"),
        (np.zeros((3, 1)), "at least 2 tokens"),
        (np.array([[0.0, np.nan]]), "NaN"),
    ],
)
def test_decoders_reject_bad_frames(bad, message):
    for f in (greedy_decode, beam_decode, frame_labels):
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
            f(bad)


def test_decoders_reject_bad_length_and_beam():
    lp = _one_hot_frames([A, B_])
    with pytest.raises(DataError, match="length"):
        greedy_decode(lp, length=3)
    with pytest.raises(DataError, match="beam_width"):
        beam_decode(lp, beam_width=0)


def test_error_rates_by_hand():
    refs = ["one two three", "four five", "six", "seven eight"]
    hyps = [
        "one too three",  # one substitution
        "four five five",  # one insertion
        "",  # one deletion
        "seven eight",
    ]  # exact
    r = error_rates(refs, hyps)
    assert (r["substitutions"], r["insertions"], r["deletions"]) == (1, 1, 1)
    assert r["hits"] == 6 and r["words"] == 8 and r["sentences"] == 4
    assert r["wer"] == pytest.approx(3 / 8)
    assert r["sentence_accuracy"] == pytest.approx(1 / 4)


def test_error_rates_ignore_extra_whitespace():
    r = error_rates(["a  b "], [" a b"])
    assert r["wer"] == 0.0 and r["sentence_accuracy"] == 1.0


@pytest.mark.parametrize(
    "refs, hyps, message",
    [
        ([], [], "at least one reference"),
        (["a b"], ["a", "b"], "1 references and 2 hypotheses"),
        (["a", "  "], ["a", "b"], "reference 1"),
        ("a b", "a b", "lists"),
    ],
)
def test_error_rates_reject_bad_input(refs, hyps, message):
    with pytest.raises(DataError, match=message):
        error_rates(refs, hyps)
