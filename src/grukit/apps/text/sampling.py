"""Sampling tokens from the language model, one step at a time with the state carried.

Shapes: S steps, N rows (independent samples), V vocabulary, H hidden, L layers.

The rule (:func:`sample_reference`; the compiled kernel computes the same), for logits ``l`` (V,)
and a uniform ``u`` in [0, 1):

    temperature = 0:  x = argmax_i l_i                       (the lowest id on ties)
    otherwise:        w_i = exp((l_i - max l) / temperature)
                      K = the top_k largest logits            (top_k = 0: all; ties: lower id)
                      K <- its smallest prefix, by decreasing w, with sum_K w >= top_p * sum_K' w
                           (K' the set before; top_p = 1: unchanged; always at least one token)
                      x = the first i in K, by increasing id, with sum_{j in K, j <= i} w_j > u * sum_K w

Sums are running sums in the order written (float64), so the kernel and the reference agree to
the last bit on the same logits. The uniforms come from the caller (``numpy.random.Generator``
draws of shape (S, N), step-major), so a seed gives the same text whatever the chunking.

:class:`Sampler` runs S steps of an :class:`~grukit.apps.text.model.LMNet` for N rows in one call
of a Numba kernel (``_sampler_kernel.run_steps``: no allocation, no dispatch per step), or, where
Numba or the BLAS binding is unavailable, the network one token at a time with this rule.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from grukit._layer_options import LAYER_NORM_EPS
from grukit._validate import InputError, check_size
from grukit.apps.text.model import LMNet
from grukit.train.config import ConfigError

__all__ = ["SamplingRule", "check_sampling", "sample_reference", "Sampler"]


@dataclass(frozen=True)
class SamplingRule:
    """temperature (0: greedy), top_k (0: off), top_p (1.0: off); see the module docstring."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def check_sampling(*, temperature=1.0, top_k=0, top_p=1.0) -> SamplingRule:
    """The rule, validated: temperature a finite number >= 0, top_k an integer >= 0, top_p in (0, 1]."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
        raise ConfigError(f"top_k must be an integer >= 0 (0: off), got {top_k!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be a number in (0, 1] (1: off), got {top_p!r}")
    return SamplingRule(float(temperature), int(top_k), float(top_p))


def sample_reference(logits, u, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """``logits`` (N, V), ``u`` (N,) uniforms in [0, 1) -> ids (N,) int64, by the module's rule.
    Plain NumPy, a row at a time: the oracle of the kernel and the fallback's sampler."""
    rule = check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    logits = np.asarray(logits, dtype=np.float64)  # (N, V)
    u = np.asarray(u, dtype=np.float64)  # (N,)
    N, V = logits.shape
    ids = np.empty(N, np.int64)
    for b in range(N):
        l = logits[b]  # (V,)
        if rule.temperature == 0:
            ids[b] = np.argmax(l)  # the first maximum
            continue
        w = np.exp((l - l.max()) / rule.temperature)  # (V,)
        order = np.lexsort((np.arange(V), -l))  # (V,) decreasing logit, then increasing id
        k = rule.top_k if 0 < rule.top_k < V else V
        if rule.top_p < 1:
            c = np.cumsum(w[order[:k]])  # (k,) running sums
            k = int(np.argmax(c >= rule.top_p * c[-1])) + 1
        keep = np.zeros(V, bool)
        keep[order[:k]] = True
        w = np.where(keep, w, 0.0)
        c = np.cumsum(w)  # (V,) by increasing id
        hit = np.flatnonzero(keep & (c > u[b] * c[-1]))
        ids[b] = hit[0] if hit.size else np.flatnonzero(w)[-1]  # rounding: u * total at the total
    return ids


# -- the compiled path --------------------------------------------------------------------------

_kernel_module: object = None  # the loaded kernel module, False if it cannot load


def _kernel():
    """``_sampler_kernel.run_steps``, or None where Numba or the BLAS binding is unavailable."""
    global _kernel_module
    if _kernel_module is None:
        from grukit.backends import cpu

        if cpu.kernels_available() is not None:
            _kernel_module = False
        else:
            from grukit.apps.text import _sampler_kernel

            _kernel_module = _sampler_kernel
    return _kernel_module.run_steps if _kernel_module else None


@dataclass(frozen=True)
class _Weights:
    """The network as the kernel reads it, in the kernel's argument order (NumPy, C-contiguous,
    the network's dtype, copies taken once)."""

    table: np.ndarray  # (V, 3H) = LN_ih(E W_ih0^T) + b_ih0 for every token
    w_ih: np.ndarray  # (L-1, 3H, H)
    w_hh: np.ndarray  # (L, 3H, H)
    b_ih: np.ndarray  # (L, 3H)
    b_hh: np.ndarray  # (L, 3H)
    g_ih: np.ndarray  # (L, 3H), or (L, 0) without layer norm
    c_ih: np.ndarray
    g_hh: np.ndarray
    c_hh: np.ndarray
    proj: np.ndarray  # (E, H), or (0, 0)
    head: np.ndarray  # (V, E) or (V, H)
    head_b: np.ndarray  # (V,)

    @classmethod
    @torch.no_grad()
    def of(cls, net: LMNet) -> "_Weights":
        g = net.gru
        L, H, dtype = g.num_layers, g.hidden_size, g.weight_hh_l0.dtype
        empty = torch.zeros(L, 0, dtype=dtype)  # (L, 0): "no layer norm" for the kernel

        def per_layer(kind: str, layers: range) -> list[Tensor]:
            if kind.startswith("bias") and not g.bias:
                return [torch.zeros(3 * H, dtype=dtype) for _ in layers]  # (3H,) each
            return [getattr(g, f"{kind}_l{k}") for k in layers]

        def norm(kind: str) -> Tensor:
            return torch.stack(per_layer(kind, range(L))) if g.layer_norm else empty  # (L, 3H)

        x = F.linear(net.embedding.weight, g.weight_ih_l0)  # (V, 3H), as the GRU's input side
        if g.layer_norm:
            x = F.layer_norm(x, (3 * H,), g.layer_norm_ih_weight_l0, g.layer_norm_ih_bias_l0, LAYER_NORM_EPS)
        w_ih = per_layer("weight_ih", range(1, L))
        head_b = (
            net.head.bias if net.head.bias is not None else torch.zeros(net.head.out_features, dtype=dtype)
        )
        tensors = dict(
            table=x + per_layer("bias_ih", range(1))[0],  # (V, 3H)
            w_ih=torch.stack(w_ih) if w_ih else torch.zeros(0, 3 * H, H, dtype=dtype),
            w_hh=torch.stack(per_layer("weight_hh", range(L))),  # (L, 3H, H)
            b_ih=torch.stack(per_layer("bias_ih", range(L))),  # (L, 3H)
            b_hh=torch.stack(per_layer("bias_hh", range(L))),  # (L, 3H)
            g_ih=norm("layer_norm_ih_weight"),
            c_ih=norm("layer_norm_ih_bias"),
            g_hh=norm("layer_norm_hh_weight"),
            c_hh=norm("layer_norm_hh_bias"),
            proj=net.proj.weight if net.proj is not None else torch.zeros(0, 0, dtype=dtype),
            head=net.head.weight,
            head_b=head_b,
        )
        return cls(**{k: t.detach().contiguous().numpy().copy() for k, t in tensors.items()})

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


def packed_weights(w: _Weights, rows: int, reset_after: bool) -> np.ndarray:
    """``packed`` of ``_sampler_kernel.run_steps``: per layer (slot 0) ``w_ih[layer - 1]`` and
    (slot 1) ``w_hh`` (``reset_after``; else its r,z rows, and its n rows in slot 2), each packed
    once by MKL for products with ``rows`` rows, (L, 3, S) float32; (L, 3, 0) where the products
    are not packed (float64, no MKL, ``GRUKIT_CPU_PACKED=0``)."""
    from grukit.backends._cpu_base import packed_products

    L, H = w.w_hh.shape[0], w.w_hh.shape[2]
    if w.w_hh.dtype != np.float32 or not packed_products(np.float32):
        return np.zeros((L, 3, 0), np.float32)
    from grukit.backends import _cpu_kernels

    mats = {}
    for layer in range(L):
        if layer > 0:
            mats[layer, 0] = w.w_ih[layer - 1]  # (3H, H)
        if reset_after:
            mats[layer, 1] = w.w_hh[layer]  # (3H, H)
        else:
            mats[layer, 1], mats[layer, 2] = w.w_hh[layer, : 2 * H], w.w_hh[layer, 2 * H :]
    size = max(_cpu_kernels.packed_floats(rows, *m.shape) for m in mats.values())
    packed = np.zeros((L, 3, size), np.float32)
    for (layer, slot), m in mats.items():
        _cpu_kernels.pack_nt_into(m, rows, packed[layer, slot])  # row slices: contiguous
    return packed


class Sampler:
    """S sampling steps of an :class:`LMNet` for ``rows`` independent rows per call, the state
    carried from call to call.

    ``Sampler(net, rows=N, temperature=..., top_k=..., top_p=...)``: ``net`` in eval mode, on the
    CPU, float32 or float64. The compiled path copies the weights once, here: build a new sampler
    after changing them. ``state``: (L, N, H), zeros at first; set it from the prompt's pass
    (``_, h = net(prompt)``). ``run(first_tokens (N,), steps, uniforms (steps, N)) -> ids
    (steps, N)``: step s reads the token of step s - 1 (``first_tokens`` at s = 0) and draws with
    ``uniforms[s]``. ``path``: "compiled" (the Numba kernel) or "torch" (the network a token at a
    time; where Numba or the BLAS binding is unavailable, or with ``fast=False``).
    """

    def __init__(
        self,
        net: LMNet,
        rows: int = 1,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        fast: bool = True,
    ) -> None:
        if not isinstance(net, LMNet):
            raise TypeError(f"Sampler: expected an LMNet, got {type(net).__name__}")
        w = net.embedding.weight
        if net.training:
            raise InputError("Sampler: expected the network in eval mode, got training mode; call net.eval()")
        if w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64):
            raise InputError(
                f"Sampler: expected a float32 or float64 network on the CPU, got {w.dtype} on {w.device}"
            )
        self.net = net
        self.rows = check_size("rows", rows)
        self.rule = check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
        self.vocab_size = w.shape[0]
        g = net.gru
        self._h = torch.zeros(g.num_layers, self.rows, g.hidden_size, dtype=w.dtype)  # (L, N, H)
        kernel = _kernel() if fast else None
        self.path = "compiled" if kernel is not None else "torch"
        if kernel is not None:
            self._kernel = kernel
            weights = _Weights.of(net)
            self._weights = weights.arrays() + (packed_weights(weights, self.rows, g.reset_after),)
            self._scratch = self._make_scratch(g.hidden_size, net.head.in_features)

    def _make_scratch(self, H: int, E: int) -> tuple[np.ndarray, ...]:
        """gi, gh (N, 3H), rh (N, H), pj (N, E), logits (N, V), order (V,) int64, w (V,) float64."""
        N, V, dt = self.rows, self.vocab_size, self._h.numpy().dtype
        return (
            np.empty((N, 3 * H), dt),
            np.empty((N, 3 * H), dt),
            np.empty((N, H), dt),
            np.empty((N, E), dt),
            np.empty((N, V), dt),
            np.empty(V, np.int64),
            np.empty(V, np.float64),
        )

    @property
    def state(self) -> Tensor:
        return self._h.clone()  # (L, N, H)

    @state.setter
    def state(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Sampler: expected state to be a torch.Tensor, got {type(value).__name__}")
        if tuple(value.shape) != tuple(self._h.shape) or value.dtype != self._h.dtype:
            raise InputError(
                f"Sampler: expected a state (L, N, H) = {tuple(self._h.shape)} of "
                f"{self._h.dtype}, got {tuple(value.shape)} of {value.dtype}"
            )
        self._h.copy_(value.detach())

    def run(self, first_tokens, steps: int, uniforms) -> np.ndarray:
        """``steps`` tokens for every row -> ids (steps, N) int64; the state moves on."""
        tokens, u = self._check_run(first_tokens, steps, uniforms)
        if self.path == "compiled":
            out = np.empty(u.shape, np.int64)  # (S, N)
            r = self.rule
            self._kernel(
                *self._weights,
                self.net.gru.reset_after,
                float(self.net.gru.zoneout),
                r.temperature,
                r.top_k,
                r.top_p,
                tokens,
                u,
                self._h.numpy(),
                out,
                *self._scratch,
            )
            return out
        return self._run_torch(tokens, u)

    @torch.no_grad()
    def _run_torch(self, tokens: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The same steps through the network's own forward, one token at a time."""
        out = np.empty(u.shape, np.int64)  # (S, N)
        x = torch.from_numpy(tokens)  # (N,)
        r = self.rule
        for s in range(u.shape[0]):
            logits, h = self.net(x[:, None], self._h)  # (N, 1, V), (L, N, H)
            self._h.copy_(h)
            out[s] = sample_reference(logits[:, 0].numpy(), u[s], r.temperature, r.top_k, r.top_p)
            x = torch.from_numpy(out[s].copy())
        return out

    def _check_run(self, first_tokens, steps, uniforms) -> tuple[np.ndarray, np.ndarray]:
        N, V = self.rows, self.vocab_size
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise InputError(f"Sampler.run: expected steps to be an integer >= 0, got {steps!r}")
        t = first_tokens.numpy() if isinstance(first_tokens, Tensor) else np.asarray(first_tokens)
        if t.shape != (N,) or t.dtype.kind not in "iu":
            raise InputError(
                f"Sampler.run: expected first_tokens of integer ids of shape ({N},), "
                f"got {t.dtype} of shape {t.shape}"
            )
        if N and (t.min() < 0 or t.max() >= V):
            raise InputError(f"Sampler.run: expected token ids in [0, {V}), got {t.min()}..{t.max()}")
        u = np.asarray(uniforms)
        if u.shape != (steps, N) or u.dtype.kind != "f":
            raise InputError(
                f"Sampler.run: expected uniforms of floats of shape ({steps}, {N}), "
                f"got {u.dtype} of shape {u.shape}"
            )
        if u.size and not (np.all(u >= 0) and np.all(u < 1)):
            raise InputError("Sampler.run: expected uniforms in [0, 1), got values outside")
        return t.astype(np.int64), np.ascontiguousarray(u, dtype=np.float64)
