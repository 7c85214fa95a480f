"""``check_backend``: the conformance suite every GRU backend passes.

Usable from any test suite (``grukit.testing.check_backend("cpu")``); raises ``AssertionError``
naming the configuration and quantity that failed. A backend is held to ``reference``
(``grukit.functional`` under autograd) in float64 at tight tolerance, and in float32 to within a
small multiple of the reference's *own* float32 error against float64. Only configurations the
backend declares itself eligible for are checked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from grukit import backends
from grukit.modules import GRU

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
    x = torch.randn(N, T, I, generator=g, dtype=F64) if cfg.batch_first else torch.randn(T, N, I, generator=g, dtype=F64)
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
    m = GRU(3, 5, cfg.layers, bias=cfg.bias, batch_first=cfg.batch_first,
            bidirectional=cfg.bidirectional, dtype=F64, reset_after=reset_after, backend=backend)
    if state is not None:
        m.load_state_dict(state)
    return m.to(dtype)


def _eligible(name: str, dtype, reset_after: bool, cfg: Config) -> bool:
    request = backends.Request(torch.device("cpu"), dtype, reset_after, cfg.bias,
                               cfg.mode == "packed", True)
    return backends.get(name).check(request) is None


def check_backend(name: str, *, configs: list[Config] | None = None, float32_factor: float = 8.0,
                  gradcheck: bool = True) -> int:
    """Run the conformance suite on backend ``name``; returns the number of checks made."""
    checks = 0
    for reset_after, cfg in itertools.product([False, True], configs or CONFIGS):
        where = f"backend {name!r}, reset_after={reset_after}, {cfg}"
        if not _eligible(name, F64, reset_after, cfg):
            continue
        x, hx, lengths = _inputs(cfg, F64, seed=hash((reset_after, cfg)) % 1000)
        ref64 = _run(_model(cfg, reset_after, "reference", F64), x, hx, lengths, F64)
        got64 = _run(_model(cfg, reset_after, name, F64), x, hx, lengths, F64)
        again = _run(_model(cfg, reset_after, name, F64), x, hx, lengths, F64)
        for key in ref64:
            torch.testing.assert_close(got64[key], ref64[key], rtol=1e-9, atol=1e-11,
                                       msg=lambda m: f"{where}, float64 {key}: {m}")
            if not torch.equal(got64[key], again[key]):
                raise AssertionError(f"{where}: repeated runs differ in {key}")
            checks += 2
        if not _eligible(name, torch.float32, reset_after, cfg):
            continue
        ref32 = _run(_model(cfg, reset_after, "reference", torch.float32), x, hx, lengths, torch.float32)
        got32 = _run(_model(cfg, reset_after, name, torch.float32), x, hx, lengths, torch.float32)
        for key in ref64:
            own = (ref32[key].double() - ref64[key]).abs().max().item()
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
