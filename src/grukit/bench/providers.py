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
class Job:
    """What one provider is asked to run: a case in one formulation and mode, on ``threads``
    threads (each peer's own setting: torch's intra-op pool, ONNX Runtime's and OpenVINO's)."""

    case: Case
    reset_after: bool
    mode: str  # "inference" | "training"
    threads: int = 1
    shared: bool = False  # other runtimes' thread pools live in the same process (--interleaved)


@dataclass(frozen=True)
class Provider:
    name: str
    build: Callable[[Job], Run]
    supports: Callable[[Job], str | None]  # None, or why not
    missing: Callable[[], str | None] = lambda: None  # None, or the missing package


def _dtype(case: Case) -> torch.dtype:
    return getattr(torch, case.dtype)


def _torch_run(model: torch.nn.Module, job: Job) -> Run:
    case = job.case
    x = torch.randn(case.T, case.N, case.I, dtype=_dtype(case))  # (T, N, I)
    model.train(job.mode == "training")  # the variants' masks exist in training only
    if job.mode == "inference":

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

    def build(job: Job) -> Run:
        import grukit

        case = job.case
        model = grukit.GRU(
            case.I,
            case.H,
            case.layers,
            bidirectional=case.bidirectional,
            dtype=_dtype(case),
            reset_after=job.reset_after,
            backend=backend,
            **options,
        )
        return _torch_run(model, job)

    def supports(job: Job) -> str | None:
        import grukit
        from grukit import backends

        dtype = _dtype(job.case)
        model = grukit.GRU(1, 1, dtype=dtype, reset_after=job.reset_after, **options)
        model.train(job.mode == "training")  # the request a forward pass in this mode would make
        return backends.get(backend).reason(model._request(torch.empty(1, 1, 1, dtype=dtype), False))

    name = f"grukit-{backend}" if variant is None else variant_provider(variant)
    return Provider(name, build, supports)


def _torch_build(job: Job) -> Run:
    case = job.case
    model = torch.nn.GRU(case.I, case.H, case.layers, bidirectional=case.bidirectional, dtype=_dtype(case))
    return _torch_run(model, job)


def _torch_supports(job: Job) -> str | None:
    return None if job.reset_after else "torch.nn.GRU has only the reset-after formulation"


def _missing(*modules: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        for module in modules:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'grukit[bench]')"
        return None

    return missing


def _onnx_supports(job: Job, runtime: str) -> str | None:
    if job.mode != "inference":
        return f"{runtime} has no GRU training"
    if job.case.dtype != "float32":
        return f"{runtime}'s CPU GRU is measured in float32 only"
    return None


def onnx_gru_model(case: Case, linear_before_reset: int, seed: int = 0):
    """The case as ONNX ``GRU`` nodes, exported by :func:`grukit.convert.export_onnx` from a
    float32 model with random weights: ``input`` (T, N, I) -> ``output`` (T, N, D*H), ``h_n``.
    ``linear_before_reset=1`` is ``reset_after=True``; both runtimes run both formulations."""
    import grukit
    from grukit.convert.onnx_export import export_onnx

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = grukit.GRU(
            case.I,
            case.H,
            case.layers,
            bidirectional=case.bidirectional,
            reset_after=bool(linear_before_reset),
        )
    return export_onnx(model)


def _onnx_input(case: Case):
    import numpy as np

    return np.random.default_rng(1).standard_normal((case.T, case.N, case.I), dtype=np.float32)


def _ort_build(job: Job) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = job.threads
    options.inter_op_num_threads = 1
    # a spinning pool steals the cores PyTorch's OpenMP pool uses (baselines.md: 100x slowdowns)
    # when both live in one process; in its own process ONNX Runtime keeps its default
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if job.shared else "1")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    model = onnx_gru_model(job.case, int(job.reset_after))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"input": _onnx_input(job.case)}
    return lambda: session.run(None, feed)


def _openvino_build(job: Job) -> Run:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(onnx_gru_model(job.case, int(job.reset_after)).SerializeToString(), b"")
    # float32 throughout: on CPUs with AMX or AVX512-BF16 OpenVINO's default precision is bf16
    compiled = core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": job.threads,
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()
    feed = {0: _onnx_input(job.case)}
    return lambda: request.infer(feed)


PROVIDERS = {
    p.name: p
    for p in (
        _grukit("cpu"),
        _grukit("reference"),
        *(_grukit("cpu", v) for v in VARIANTS),
        Provider("torch", _torch_build, _torch_supports),
        Provider(
            "ort",
            _ort_build,
            lambda job: _onnx_supports(job, "ONNX Runtime"),
            _missing("onnx", "onnxruntime"),
        ),
        Provider(
            "openvino",
            _openvino_build,
            lambda job: _onnx_supports(job, "OpenVINO"),
            _missing("onnx", "openvino"),
        ),
    )
}
DEFAULT = ["grukit-cpu", "torch", "ort", "openvino"]
PEERS = ("torch", "ort", "openvino")  # what grukit is compared with
