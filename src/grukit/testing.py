"""``check_backend``: the conformance suite every GRU backend passes.

Usable from any test suite (``grukit.testing.check_backend("cpu")``); raises ``AssertionError``
naming the configuration, the input seed and the quantity that failed. A backend is held, in
float64 at tight tolerance, to an oracle that shares no code with any backend:

- ``reset_after=True``: ``torch.nn.GRU`` in float64 with the same state dict;
- ``reset_after=False``: the spec's four equations written literally (``grukit.spec``), run one
  sequence at a time over its own length, with the weights rearranged into the spec's
  ``W . [h, x]`` form right here, not by the library's converters.

Outputs and every gradient (autograd through the oracle) are compared. In float32 a backend must
stay within a small multiple of the ``reference`` backend's *own* float32 error against the
oracle. Only configurations the backend declares itself eligible for are checked; inputs come
from a fixed seed per configuration, so a failure reproduces exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from grukit import backends
from grukit.modules import GRU
from grukit.spec import spec_sequence

__all__ = ["check_backend", "Config", "CONFIGS"]

F64 = torch.float64


@dataclass(frozen=True)
class Config:
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    hx: bool = True
    mode: str = "batched"  # "batched" | "unbatched" | "packed"


def _covering_configs() -> list[Config]:
    """Every (layers, direction, input kind), with batch_first, bias and hx rotated through both
    values; the full cross product is what tests/test_parity_torch.py runs against torch.nn.GRU."""
    out = []
    kinds = ["batched", "unbatched", "packed"]
    for i, (layers, bi, mode) in enumerate(itertools.product([1, 2], [False, True], kinds)):
        out.append(Config(layers, bi, i % 2 == 1 and mode != "unbatched", i % 3 != 2, i % 4 < 2, mode))
    out.append(Config(3, True, True, False, True, "packed"))
    return out


CONFIGS = _covering_configs()


def _inputs(cfg: Config, dtype: torch.dtype, seed: int, T=7, N=4, I=3, H=5):
    g = torch.Generator().manual_seed(seed)
    D = 2 if cfg.bidirectional else 1
    if cfg.mode == "unbatched":
        x = torch.randn(T, I, generator=g, dtype=F64)
        hx = torch.randn(D * cfg.layers, H, generator=g, dtype=F64) if cfg.hx else None
        return x, hx, None
    x = (
        torch.randn(N, T, I, generator=g, dtype=F64)
        if cfg.batch_first
        else torch.randn(T, N, I, generator=g, dtype=F64)
    )
    hx = torch.randn(D * cfg.layers, N, H, generator=g, dtype=F64) if cfg.hx else None
    lengths = torch.tensor([min(4, T), T, 1, T - 1]) if cfg.mode == "packed" else None
    return x, hx, lengths


def _run(model: GRU, x, hx, lengths, dtype):
    """Outputs and gradients of (output, h_n) w.r.t. input, hx and every parameter."""
    x = x.to(dtype).requires_grad_(True)
    hx = hx.to(dtype).requires_grad_(True) if hx is not None else None
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=model.batch_first, enforce_sorted=False)
    out, h_n = model(inp, hx)
    data = out.data if isinstance(out, PackedSequence) else out
    g = torch.Generator().manual_seed(7)
    loss = (data * torch.randn(data.shape, generator=g, dtype=F64).to(dtype)).sum() + (
        h_n * torch.randn(h_n.shape, generator=g, dtype=F64).to(dtype)
    ).sum()
    wrt = [x] + ([hx] if hx is not None else []) + list(model.parameters())
    grads = torch.autograd.grad(loss, wrt)
    names = ["input"] + (["hx"] if hx is not None else []) + [n for n, _ in model.named_parameters()]
    return {"output": data.detach(), "h_n": h_n.detach(), **{f"grad {n}": g for n, g in zip(names, grads)}}


def _model(cfg: Config, reset_after: bool, backend: str, dtype, state=None) -> GRU:
    torch.manual_seed(0)
    m = GRU(
        3,
        5,
        cfg.layers,
        bias=cfg.bias,
        batch_first=cfg.batch_first,
        bidirectional=cfg.bidirectional,
        dtype=F64,
        reset_after=reset_after,
        backend=backend,
    )
    if state is not None:
        m.load_state_dict(state)
    return m.to(dtype)


class _SpecGRU(nn.Module):
    """The oracle for ``reset_after=False``: ``torch.nn.GRU``'s interface and parameter names,
    computed with the spec's equations one sequence, layer and direction at a time."""

    def __init__(self, state: dict[str, Tensor], cfg: Config, H: int):
        super().__init__()
        self.cfg, self.H, self.D = cfg, H, 2 if cfg.bidirectional else 1
        self.batch_first = cfg.batch_first  # read by _run, as on torch.nn.GRU
        for name, value in state.items():
            self.register_parameter(name, nn.Parameter(value.detach().clone()))

    def _spec_params(self, suffix: str) -> dict[str, Tensor]:
        """grukit's (W_ih, W_hh, b_ih, b_hh), gate rows r, z, n, as the spec's ``W_g . [h, x]``;
        the spec's update gate is grukit's negated (docs/spec.md)."""
        H = self.H
        w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
        zero = w_ih.new_zeros(3 * H)
        b_ih = getattr(self, "bias_ih" + suffix) if self.cfg.bias else zero
        b_hh = getattr(self, "bias_hh" + suffix) if self.cfg.bias else zero
        r, z, n = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
        return {
            "W_z": -torch.cat([w_hh[z], w_ih[z]], 1),
            "b_z": -(b_ih[z] + b_hh[z]),  # (H, H+I)
            "W_r": torch.cat([w_hh[r], w_ih[r]], 1),
            "b_r": b_ih[r] + b_hh[r],
            "W_h": torch.cat([w_hh[n], w_ih[n]], 1),
            "b_h": b_ih[n] + b_hh[n],
        }

    def forward(self, inp, hx=None):
        cfg, H, D = self.cfg, self.H, self.D
        packed = isinstance(inp, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(inp, batch_first=cfg.batch_first)
        else:
            x, lengths = inp, None
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)  # (T, 1, I)
            hx = hx.unsqueeze(1) if hx is not None else None
        elif cfg.batch_first:
            x = x.transpose(0, 1)  # (T, N, I)
        T, N = x.shape[0], x.shape[1]
        lengths = [T] * N if lengths is None else lengths.tolist()
        if hx is None:
            hx = x.new_zeros(cfg.layers * D, N, H)
        h_n, layer_in = [], x
        for layer in range(cfg.layers):
            out = x.new_zeros(T, N, D * H)  # (T, N, D*H), zero past each sequence's end
            for d in range(D):
                p = self._spec_params(f"_l{layer}" + ("_reverse" if d else ""))
                finals = []
                for b in range(N):
                    seq = layer_in[: lengths[b], b : b + 1]  # (len, 1, I)
                    if d:
                        seq = seq.flip(0)
                    ys, h = spec_sequence(seq, hx[layer * D + d, b : b + 1], p)  # (len, 1, H)
                    out[: lengths[b], b, d * H : (d + 1) * H] = (ys.flip(0) if d else ys)[:, 0]
                    finals.append(h[0])
                h_n.append(torch.stack(finals))  # (N, H)
            layer_in = out
        h_n = torch.stack(h_n)  # (L*D, N, H)
        if unbatched:
            return layer_in[:, 0], h_n[:, 0]
        if packed:
            order = layer_in.transpose(0, 1) if cfg.batch_first else layer_in
            return pack_padded_sequence(
                order, torch.tensor(lengths), batch_first=cfg.batch_first, enforce_sorted=False
            ), h_n
        return (layer_in.transpose(0, 1) if cfg.batch_first else layer_in), h_n


def _oracle(cfg: Config, reset_after: bool) -> nn.Module:
    """The float64 oracle with the weights of ``_model(cfg, reset_after, ...)``."""
    state = _model(cfg, reset_after, "reference", F64).state_dict()
    if not reset_after:
        return _SpecGRU(state, cfg, H=5)
    oracle = nn.GRU(
        3,
        5,
        cfg.layers,
        bias=cfg.bias,
        batch_first=cfg.batch_first,
        bidirectional=cfg.bidirectional,
        dtype=F64,
    )
    oracle.load_state_dict(state, strict=True)
    return oracle


def _eligible(name: str, dtype, reset_after: bool, cfg: Config) -> bool:
    request = backends.Request(torch.device("cpu"), dtype, reset_after, cfg.bias, cfg.mode == "packed", True)
    return backends.get(name).check(request) is None


def check_backend(
    name: str, *, configs: list[Config] | None = None, float32_factor: float = 8.0, gradcheck: bool = True
) -> int:
    """Run the conformance suite on backend ``name``; returns the number of checks made."""
    checks = 0
    for i, (reset_after, cfg) in enumerate(itertools.product([False, True], configs or CONFIGS)):
        seed = 1000 + i  # fixed per configuration: a failure reproduces exactly
        where = f"backend {name!r}, reset_after={reset_after}, {cfg}, input seed {seed}"
        if not _eligible(name, F64, reset_after, cfg):
            continue
        x, hx, lengths = _inputs(cfg, F64, seed=seed)
        ref64 = _run(_oracle(cfg, reset_after), x, hx, lengths, F64)
        got64 = _run(_model(cfg, reset_after, name, F64), x, hx, lengths, F64)
        again = _run(_model(cfg, reset_after, name, F64), x, hx, lengths, F64)
        for key in ref64:
            torch.testing.assert_close(
                got64[key], ref64[key], rtol=1e-9, atol=1e-11, msg=lambda m: f"{where}, float64 {key}: {m}"
            )
            if not torch.equal(got64[key], again[key]):
                raise AssertionError(f"{where}: repeated runs differ in {key}")
            checks += 2
        if not _eligible(name, torch.float32, reset_after, cfg):
            continue
        ref32 = _run(_model(cfg, reset_after, "reference", torch.float32), x, hx, lengths, torch.float32)
        got32 = _run(_model(cfg, reset_after, name, torch.float32), x, hx, lengths, torch.float32)
        for key in ref64:
            own = (ref32[key].double() - ref64[key]).abs().max().item()  # reference's f32 error
            err = (got32[key].double() - ref64[key]).abs().max().item()
            bound = float32_factor * own + 1e-6 * (1 + ref64[key].abs().max().item())
            if err > bound:
                raise AssertionError(
                    f"{where}, float32 {key}: error {err:.3g} against float64 exceeds "
                    f"{float32_factor} x the reference's own float32 error {own:.3g} (+ floor)"
                )
            checks += 1
    if gradcheck:
        checks += _gradchecks(name)
    if checks == 0:
        raise AssertionError(f"backend {name!r} is eligible for no configuration on CPU")
    return checks


def _gradchecks(name: str) -> int:
    checks = 0
    for reset_after, packed in itertools.product([False, True], repeat=2):
        cfg = Config(1, True, False, True, True, "packed" if packed else "batched")
        if not _eligible(name, F64, reset_after, cfg):
            continue
        model = _model(cfg, reset_after, name, F64)
        names = [n for n, _ in model.named_parameters()]
        x, hx, lengths = _inputs(cfg, F64, seed=3, T=4, N=4, I=3, H=5)

        def f(x, hx, *params):
            inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
            out, h_n = torch.func.functional_call(model, dict(zip(names, params)), (inp, hx))
            return (out.data if packed else out), h_n

        params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
        ok = torch.autograd.gradcheck(
            f, (x.requires_grad_(True), hx.requires_grad_(True), *params), eps=1e-6, atol=1e-6
        )
        if not ok:
            raise AssertionError(f"gradcheck failed for backend {name!r}, {cfg}")
        checks += 1
    return checks
