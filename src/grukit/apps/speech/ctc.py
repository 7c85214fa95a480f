"""Decoding CTC outputs into labellings, and word error rate.

A CTC network (Graves et al. 2006) gives at each of T frames a distribution over V tokens: the
blank (id :data:`BLANK` = 0) and the labels 1..V-1. An *alignment* ``pi`` (one token per frame)
collapses to a labelling ``B(pi)`` by merging repeated tokens, then dropping blanks, so
``a a _ a b b -> a a b``. The probability of a labelling ``l`` sums over its alignments:

    p(l | x) = sum_{pi : B(pi) = l} prod_t y_t(pi_t)

* :func:`greedy_decode` (best path): ``B(argmax_k y_t(k), t = 1..T)``, the labelling of the single
  most probable alignment; not always the most probable labelling.
* :func:`beam_decode`: CTC prefix beam search (Hannun et al. 2014, "First-pass large vocabulary
  continuous speech recognition using bi-directional recurrent DNNs", Algorithm 1, without a
  language model). Each prefix ``l`` after frame t carries the probability of its alignments that
  end in a blank, ``p_b``, and in a label, ``p_nb``; with ``p(l) = p_b(l) + p_nb(l)`` and ``c``
  the last label of ``l``, frame t+1 gives

      p_b(l)      += p(l) y(blank)
      p_nb(l)     += p_nb(l) y(c)                      (the repeat merges into c)
      p_nb(l + k) += p(l) y(k)            for k != c
      p_nb(l + c) += p_b(l) y(c)                       (a repeated label needs a blank between)

  and the ``beam_width`` prefixes with the largest ``p(l)`` are kept. Prefixes reached two ways
  are merged, so with a beam wide enough never to prune, the result is exactly the most probable
  labelling. Everything is computed in log space (``np.logaddexp``).
* :func:`error_rates`: word error rate through ``jiwer``.

Shapes: T frames, V tokens (blank included), B prefixes in the beam.
"""

from __future__ import annotations

import numpy as np

from grukit.data.series import DataError

__all__ = ["BLANK", "greedy_decode", "beam_decode", "frame_labels", "error_rates"]

BLANK = 0


def _log_probs(log_probs, length, what: str = "log_probs") -> np.ndarray:
    """``log_probs`` as a float64 numpy array (length, V), checked."""
    if hasattr(log_probs, "detach"):  # a torch tensor, on any device
        log_probs = log_probs.detach().cpu().double().numpy()
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2:
        raise DataError(
            f"{what}: expected a (T, V) array of per-frame log probabilities, got shape {lp.shape}"
        )
    T, V = lp.shape
    if V < 2:
        raise DataError(f"{what}: expected at least 2 tokens (the blank and one label), got V={V}")
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= T:
            raise DataError(f"{what}: expected length an integer in [0, {T}], got {length!r}")
        lp = lp[: int(length)]  # (T, V)
    if np.isnan(lp).any() or (lp == np.inf).any():
        t = int(np.argwhere(np.isnan(lp) | (lp == np.inf))[0, 0])
        raise DataError(f"{what}: expected log probabilities (finite or -inf), got NaN or +inf at frame {t}")
    return lp


def frame_labels(log_probs, length: int | None = None) -> np.ndarray:
    """The most probable token of each frame, (T,) int64 (for alignment plots)."""
    lp = _log_probs(log_probs, length)
    return lp.argmax(axis=1).astype(np.int64)  # (T,)


def greedy_decode(log_probs, length: int | None = None) -> list[int]:
    """Best-path decoding of ``log_probs`` (T, V) (numpy or torch; only the first ``length``
    frames when given): the argmax of each frame, repeats merged, blanks dropped."""
    best = frame_labels(log_probs, length)  # (T,)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(k) for k in best[keep] if k != BLANK]


def beam_decode(log_probs, beam_width: int = 16, length: int | None = None) -> tuple[list[int], float]:
    """CTC prefix beam search over ``log_probs`` (T, V) (numpy or torch; only the first ``length``
    frames when given): (the best labelling found, its log probability ``log p(l | x)``, summed
    over all of its alignments). With ``beam_width`` at least the number of possible prefixes
    the search never prunes and the labelling is the most probable one.

    The frames need not be normalised: the score is then the log of the summed path scores."""
    if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise DataError(f"expected beam_width a positive integer, got {beam_width!r}")
    lp = _log_probs(log_probs, length)
    T, V = lp.shape
    # The beam: prefixes (tuples of labels) and their log p_b, log p_nb, (B,) each.
    prefixes: list[tuple[int, ...]] = [()]
    lpb = np.array([0.0])
    lpnb = np.array([-np.inf])
    labels = np.arange(1, V)  # (V-1,)
    for t in range(T):
        y = lp[t]  # (V,)
        B = len(prefixes)
        total = np.logaddexp(lpb, lpnb)  # (B,)
        last = np.array([p[-1] if p else BLANK for p in prefixes])  # (B,)
        # staying: the prefix unchanged, through a blank or a repeat of its last label
        stay_b = total + y[BLANK]  # (B,)
        stay_nb = np.where(last != BLANK, lpnb + y[last], -np.inf)  # (B,)
        # extending by label k: from p_b only when k repeats the last label
        source = np.where(labels[None, :] == last[:, None], lpb[:, None], total[:, None])  # (B, V-1)
        ext = source + y[None, 1:]  # (B, V-1)
        # an extension that is itself in the beam merges into that prefix's p_nb
        index = {p: i for i, p in enumerate(prefixes)}
        for i, p in enumerate(prefixes):
            if p:
                j = index.get(p[:-1])
                if j is not None:
                    stay_nb[i] = np.logaddexp(stay_nb[i], ext[j, p[-1] - 1])
                    ext[j, p[-1] - 1] = -np.inf
        # keep the beam_width best of the B stayers and B (V-1) extensions
        scores = np.concatenate([np.logaddexp(stay_b, stay_nb), ext.ravel()])  # (B + B (V-1),)
        live = np.flatnonzero(scores > -np.inf)
        if len(live) == 0:  # every path has probability 0: keep the empty prefix's zero
            return [], float("-inf")
        order = live[np.argsort(-scores[live], kind="stable")[:beam_width]]
        new_prefixes, new_b, new_nb = [], [], []
        for k in order:
            if k < B:
                new_prefixes.append(prefixes[k])
                new_b.append(stay_b[k])
                new_nb.append(stay_nb[k])
            else:
                j, c = divmod(int(k) - B, V - 1)
                new_prefixes.append(prefixes[j] + (c + 1,))
                new_b.append(-np.inf)
                new_nb.append(ext[j, c])
        prefixes, lpb, lpnb = new_prefixes, np.array(new_b), np.array(new_nb)
    total = np.logaddexp(lpb, lpnb)  # (B,)
    best = int(np.argmax(total))
    return [int(c) for c in prefixes[best]], float(total[best])


def error_rates(references: list[str], hypotheses: list[str]) -> dict:
    """Word error rate of ``hypotheses`` against ``references`` (strings of words separated by
    whitespace), through ``jiwer.process_words``:

        wer = (substitutions + deletions + insertions) / words

    Returns ``wer``, ``substitutions``, ``deletions``, ``insertions``, ``hits``, ``words`` (reference
    words), ``sentences`` and ``sentence_accuracy`` (the share of hypotheses whose words equal the
    reference's exactly). A reference must hold at least one word; a hypothesis may be empty."""
    from grukit._extras import require

    if isinstance(references, str) or isinstance(hypotheses, str):
        raise DataError("expected lists of transcripts, got a str; wrap one transcript in a list")
    references, hypotheses = list(references), list(hypotheses)
    if not references:
        raise DataError("expected at least one reference transcript, got none")
    if len(references) != len(hypotheses):
        raise DataError(
            f"expected one hypothesis per reference, got {len(references)} references and "
            f"{len(hypotheses)} hypotheses"
        )
    for what, texts in (("reference", references), ("hypothesis", hypotheses)):
        for i, s in enumerate(texts):
            if not isinstance(s, str):
                raise DataError(f"{what} {i}: expected a str, got {type(s).__name__}")
    refs = [r.split() for r in references]
    hyps = [h.split() for h in hypotheses]
    for i, r in enumerate(refs):
        if not r:
            raise DataError(f"reference {i}: expected at least one word, got {references[i]!r}")
    jiwer = require("jiwer", "speech", what="word error rate")
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    words = sum(len(r) for r in refs)
    return {
        "wer": float(out.wer),
        "substitutions": int(out.substitutions),
        "deletions": int(out.deletions),
        "insertions": int(out.insertions),
        "hits": int(out.hits),
        "words": int(words),
        "sentences": len(refs),
        "sentence_accuracy": sum(r == h for r, h in zip(refs, hyps)) / len(refs),
    }
