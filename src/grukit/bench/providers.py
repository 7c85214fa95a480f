"""The implementations ``grukit bench`` compares. Each provider builds, for one case, formulation
and mode, a zero-argument callable that runs one forward pass (inference) or one forward and
backward pass (training). Shapes: T steps, N batch, I inputs, H hidden."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch

from grukit.bench.cases import Case

Run = Callable[[], object]


@dataclass(frozen=True)
class Provider:
    name: str
    build: Callable[[Case, bool, str], Run]  # (case, reset_after, mode) -> run
    supports: Callable[[Case, bool, str], str | None]  # None, or why not
    missing: Callable[[], str | None] = lambda: None  # None, or the missing package


def _dtype(case: Case) -> torch.dtype:
    return getattr(torch, case.dtype)


def _torch_run(model: torch.nn.Module, case: Case, mode: str) -> Run:
    x = torch.randn(case.T, case.N, case.I, dtype=_dtype(case))  # (T, N, I)
    model.train(mode == "training")  # the variants' masks exist in training only
    if mode == "inference":
        def run():
            with torch.inference_mode():
                return model(x)
        return run

    def run():
        model.zero_grad(set_to_none=True)
        out, h_n = model(x)
        out.sum().backward()
    return run


# ``grukit bench --variants``: the options of grukit.GRU measured against the plain GRU, at
# rates typical of the papers that introduced them
VARIANTS = {
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=0.1),
    "recurrent_dropout": dict(recurrent_dropout=0.25),
    "weight_dropout": dict(weight_dropout=0.5),
    "all": dict(layer_norm=True, zoneout=0.1, recurrent_dropout=0.25, weight_dropout=0.5),
}


def variant_provider(variant: str) -> str:
    """The provider name of grukit-cpu with one entry of ``VARIANTS``."""
    return f"grukit-cpu[{variant}]"


def _grukit(backend: str, variant: str | None = None) -> Provider:
    options = VARIANTS[variant] if variant else {}

    def build(case: Case, reset_after: bool, mode: str) -> Run:
        import grukit

        model = grukit.GRU(case.I, case.H, case.layers, bidirectional=case.bidirectional,
                           dtype=_dtype(case), reset_after=reset_after, backend=backend, **options)
        return _torch_run(model, case, mode)

    def supports(case: Case, reset_after: bool, mode: str) -> str | None:
        import grukit
        from grukit import backends

        model = grukit.GRU(1, 1, dtype=_dtype(case), reset_after=reset_after, **options)
        model.train(mode == "training")  # the request a forward pass in this mode would make
        return backends.get(backend).reason(model._request(torch.empty(1, 1, 1, dtype=_dtype(case)), False))

    name = f"grukit-{backend}" if variant is None else variant_provider(variant)
    return Provider(name, build, supports)


def _torch_build(case: Case, reset_after: bool, mode: str) -> Run:
    model = torch.nn.GRU(case.I, case.H, case.layers, bidirectional=case.bidirectional,
                         dtype=_dtype(case))
    return _torch_run(model, case, mode)


def _torch_supports(case: Case, reset_after: bool, mode: str) -> str | None:
    return None if reset_after else "torch.nn.GRU has only the reset-after formulation"


def _ort_missing() -> str | None:
    for module in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'grukit[bench]')"
    return None


def _ort_supports(case: Case, reset_after: bool, mode: str) -> str | None:
    if mode != "inference":
        return "ONNX Runtime has no GRU training"
    if case.dtype != "float32":
        return "ONNX Runtime's CPU GRU kernel is float32 only"
    return None


def onnx_gru_model(case: Case, linear_before_reset: int, seed: int = 0):
    """The case as ONNX ``GRU`` nodes, exported by :func:`grukit.convert.export_onnx` from a
    float32 model with random weights: ``input`` (T, N, I) -> ``output`` (T, N, D*H), ``h_n``."""
    import grukit
    from grukit.convert.onnx_export import export_onnx

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = grukit.GRU(case.I, case.H, case.layers, bidirectional=case.bidirectional,
                           reset_after=bool(linear_before_reset))
    return export_onnx(model)


def _ort(linear_before_reset: int) -> Provider:
    def build(case: Case, reset_after: bool, mode: str) -> Run:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # a spinning pool steals the cores PyTorch's OpenMP pool uses (baselines.md: 100x slowdowns)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        model = onnx_gru_model(case, linear_before_reset)
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        feed = {"input": np.random.default_rng(1).standard_normal((case.T, case.N, case.I), dtype=np.float32)}
        return lambda: session.run(None, feed)

    def supports(case: Case, reset_after: bool, mode: str) -> str | None:
        if reset_after != bool(linear_before_reset):
            return f"linear_before_reset={linear_before_reset} is the other formulation"
        return _ort_supports(case, reset_after, mode)

    return Provider(f"ort-lbr{linear_before_reset}", build, supports, _ort_missing)


PROVIDERS = {
    p.name: p
    for p in (
        _grukit("cpu"),
        _grukit("reference"),
        *(_grukit("cpu", v) for v in VARIANTS),
        Provider("torch", _torch_build, _torch_supports),
        _ort(1),
        _ort(0),
    )
}
DEFAULT = ["grukit-cpu", "torch", "ort-lbr1", "ort-lbr0"]
