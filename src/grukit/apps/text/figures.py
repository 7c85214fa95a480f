"""Figures of a language model: what it spends on each character, and its gates over a text."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["surprisal", "gate_figure"]


@torch.no_grad()
def surprisal(lm, ids: np.ndarray) -> np.ndarray:
    """(T,) bits the model spends on each token given the ones before it: ``-log2 p(x_t | x_<t)``;
    NaN for the first token (no context)."""
    net = lm.net_.eval()
    x = torch.from_numpy(np.asarray(ids, dtype=np.int64))[None]  # (1, T)
    logits, _ = net(x)  # (1, T, V)
    logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)  # (T-1, V)
    bits = -logp.gather(1, x[0, 1:, None])[:, 0] / math.log(2)  # (T-1,)
    return np.concatenate([[np.nan], bits.numpy()])


def gate_figure(lm, text: str, path, *, units: int = 48) -> dict:
    """The update and reset gates of the first layer while the model reads ``text``, under the
    bits it spends on each character; the ``units`` units with the most varying z, sorted by mean
    z. Returns the numbers drawn (mean gates, the units shown)."""
    from grukit import inspect
    from grukit._inspect_plots import plot_gates, unit_order
    from grukit._io import atomic_write

    ids = lm._tokens(text, "the text")
    net = lm.net_.eval()
    x = torch.from_numpy(ids)[None]  # (1, T)
    with inspect.recording(net.gru) as traces, torch.no_grad():
        net(x)
    z = traces[-1].z[0, 0, :, 0].double().numpy()  # (T, H)
    r = traces[-1].r[0, 0, :, 0].double().numpy()  # (T, H)
    keep = np.sort(np.argsort(-z.std(0), kind="stable")[:units])  # (U,) the most varying units
    order = keep[unit_order(z[:, keep])]
    chars = [("\u2423" if c == " " else c) for c in text] if len(text) == len(ids) else None
    atomic_write(
        path,
        lambda tmp: plot_gates(
            tmp,
            surprisal(lm, ids)[:, None],
            [("z, units\nby mean z", z[:, order]), ("r, units\nby mean z", r[:, order])],
            units=order,
            title=f"the update gate z and reset gate r of {len(order)} of {z.shape[1]} "
            "units (the most varying) while the model reads a sentence",
            signal_label="bits",
            x_label="character",
            tick_labels=chars,
        ),
    )
    return {"mean_z": float(z.mean()), "mean_r": float(r.mean()), "units": order.tolist()}
