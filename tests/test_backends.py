"""The backend seam: registry, eligibility, selection, and every backend against the reference."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import grukit
from grukit import backends

from conftest import tols

F64 = torch.float64


def test_registry_lists_the_builtin_backends():
    assert backends.names() == ["cpu", "torch", "reference"]  # priority order
    assert backends.get("reference").name == "reference"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_auto_on_cpu_runs_the_fused_kernels_and_says_so(reset_after, dtype):
    gru = grukit.GRU(3, 4, reset_after=reset_after, dtype=dtype)
    x = torch.randn(5, 2, 3, dtype=dtype)
    assert gru.backend_used is None
    assert gru.backend_for(x) == "cpu"
    gru(x)
    assert gru.backend_used == "cpu"


def test_auto_falls_back_to_reference_where_the_kernels_do_not_apply():
    gru = grukit.GRU(3, 4, dtype=torch.bfloat16)
    gru(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    assert gru.backend_used == "reference"
    with pytest.raises(
        backends.BackendUnavailable,
        match="'cpu' cannot run this input: supports float32 and float64, got torch.bfloat16",
    ):
        grukit.GRU(3, 4, dtype=torch.bfloat16, backend="cpu")(torch.randn(5, 2, 3, dtype=torch.bfloat16))


def test_explicit_backend_that_cannot_run_raises_with_the_reason():
    gru = grukit.GRU(3, 4, backend="torch")  # reset_after=False: PyTorch has no such GRU
    with pytest.raises(
        backends.BackendUnavailable,
        match="'torch' cannot run this input: PyTorch implements only reset_after=True",
    ):
        gru(torch.randn(5, 2, 3))


def test_explain_gives_a_reason_per_backend():
    req = backends.Request(
        torch.device("cpu"), torch.float32, reset_after=False, bias=True, packed=False, requires_grad=True
    )
    reasons = backends.explain(req)
    assert reasons["reference"] is None and reasons["cpu"] is None
    assert "reset_after=True" in reasons["torch"]
    cuda_req = backends.Request(torch.device("cuda"), torch.float32, True, True, False, True)
    assert backends.select("auto", cuda_req).name == "torch"  # cuDNN where it applies
    assert "CPU tensors only" in backends.explain(cuda_req)["cpu"]


def test_backend_can_be_switched_on_a_module():
    gru = grukit.GRU(3, 4, reset_after=True, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    a = gru(x)[0]
    gru.backend = "torch"
    b = gru(x)[0]
    assert gru.backend_used == "torch"
    torch.testing.assert_close(a, b, **tols(F64))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_torch_backend_matches_reference_with_gradients(bidirectional, packed):
    ref = grukit.GRU(3, 4, 2, bidirectional=bidirectional, dtype=F64, reset_after=True, backend="reference")
    nat = grukit.GRU(3, 4, 2, bidirectional=bidirectional, dtype=F64, reset_after=True, backend="torch")
    nat.load_state_dict(ref.state_dict())
    D = 2 if bidirectional else 1
    hx = torch.randn(2 * D, 3, 4, dtype=F64)
    seqs = [torch.randn(n, 3, dtype=F64) for n in (2, 5, 3)]
    inp = pack_sequence(seqs, enforce_sorted=False) if packed else torch.stack([s[:2] for s in seqs], 1)
    outs = []
    for m in (ref, nat):
        out, h = m(inp, hx)
        data = out.data if packed else out
        grads = torch.autograd.grad(data.sum() + h.square().sum(), list(m.parameters()))
        outs.append((data, h, grads))
    (d1, h1, g1), (d2, h2, g2) = outs
    torch.testing.assert_close(d1, d2, **tols(F64))
    torch.testing.assert_close(h1, h2, **tols(F64))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **tols(F64))


def _torch_gru_pair(reset_after=True, **kw):
    """A grukit.GRU and a torch.nn.GRU with the same weights (float64)."""
    ours = grukit.GRU(3, 4, 2, reset_after=reset_after, dtype=F64, **kw)
    theirs = torch.nn.GRU(3, 4, 2, dtype=F64, bidirectional=kw.get("bidirectional", False))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("packed", [False, True])
def test_torch_backend_trains_on_cpu_like_torch_nn_gru(packed):
    ours, theirs = _torch_gru_pair(bidirectional=True, backend="torch")
    seqs = [torch.randn(n, 3, dtype=F64) for n in (4, 6, 2)]
    inp = pack_sequence(seqs, enforce_sorted=False) if packed else torch.stack([s[:2] for s in seqs], 1)
    results = []
    for m in (ours, theirs):
        out, h = m(inp)
        data = out.data if packed else out
        loss = data.square().sum() + h.sum()
        results.append([data, h, *torch.autograd.grad(loss, list(m.parameters()))])
    assert ours.backend_used == "torch"
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tols(F64))


@pytest.mark.parametrize("packed", [False, True])
def test_torch_backend_tells_pytorch_whether_it_trains(packed, monkeypatch):
    """cuDNN's backward refuses a forward run with train=False: the flag must say whether
    autograd will need the graph (True when a gradient is needed, False under no_grad)."""
    seen = []
    real = torch._VF.gru

    def spy(*args):
        seen.append(args[7] if packed else args[6])  # the `train` argument of either overload
        return real(*args)

    monkeypatch.setattr(torch._VF, "gru", spy)
    gru = grukit.GRU(3, 4, reset_after=True, backend="torch")
    seqs = [torch.randn(n, 3) for n in (4, 2)]
    inp = pack_sequence(seqs, enforce_sorted=False) if packed else torch.randn(4, 2, 3)
    gru(inp)
    with torch.no_grad():
        gru(inp)
    gru.requires_grad_(False)
    gru(inp)  # nothing needs a gradient
    assert seen == [True, False, False]


def _without_cpu_kernels(monkeypatch):
    from grukit.backends import cpu

    monkeypatch.setattr(cpu, "_availability", "Numba is not installed (simulated)")
    monkeypatch.setattr(cpu, "_warned", False)


def test_auto_on_cpu_without_the_kernels_picks_torch_for_reset_after(monkeypatch):
    _without_cpu_kernels(monkeypatch)
    x = torch.randn(5, 2, 3)
    after = grukit.GRU(3, 4, reset_after=True)
    with pytest.warns(RuntimeWarning, match="unavailable, falling back to 'torch': Numba is not installed"):
        after(x)
    assert after.backend_used == "torch"
    before = grukit.GRU(3, 4, reset_after=False)
    before(x)  # the warning came once, above
    assert before.backend_used == "reference"
    req = backends.Request(
        torch.device("cpu"), torch.float32, reset_after=True, bias=True, packed=False, requires_grad=True
    )
    reasons = backends.explain(req)
    assert reasons["cpu"] == "Numba is not installed (simulated)"
    assert reasons["torch"] is None
    reasons_before = backends.explain(
        backends.Request(torch.device("cpu"), torch.float32, False, True, False, True)
    )
    assert "reset_after=True" in reasons_before["torch"] and reasons_before["reference"] is None


def test_auto_on_cpu_with_the_kernels_says_why_not_torch():
    req = backends.Request(
        torch.device("cpu"), torch.float64, reset_after=True, bias=True, packed=False, requires_grad=False
    )
    assert backends.select("auto", req).name == "cpu"
    assert (
        backends.explain(req)["torch"]
        == "on CPU chosen automatically only where the fused 'cpu' backend cannot run"
    )


def test_the_openmp_launch_fallback_warns_once(monkeypatch):
    """Where PyTorch's OpenMP launcher cannot load, blocks run on grukit's own threads, with one
    RuntimeWarning giving the reason, and the same results."""
    import sys

    from grukit.backends import _cpu_launch

    monkeypatch.delenv("GRUKIT_CPU_THREADS", raising=False)
    monkeypatch.setenv("GRUKIT_CPU_SPLIT", "features")  # two blocks, so a launch needs threads
    monkeypatch.setitem(sys.modules, "grukit.backends._cpu_omp", None)  # the import fails
    _cpu_launch._omp.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ref = grukit.GRU(3, 16, dtype=F64, backend="reference")
        fused = grukit.GRU(3, 16, dtype=F64, backend="cpu")
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(4, 2, 3, dtype=F64)
        with pytest.warns(
            RuntimeWarning,
            match="cannot run on PyTorch's OpenMP threads, falling back to its own Python threads.*ModuleNotFoundError",
        ) as record:
            out = fused(x)[0]
            fused(x)
        assert len([w for w in record if "OpenMP" in str(w.message)]) == 1
        assert backends.cpu.thread_plan(4, 2, 16, F64).launcher == "python"
        torch.testing.assert_close(out, ref(x)[0], **tols(F64))
    finally:
        torch.set_num_threads(threads)
        _cpu_launch._omp.cache_clear()  # the real launcher loads again on next use


def test_thread_plan_describes_the_split(monkeypatch):
    from grukit.backends import cpu

    monkeypatch.setenv("GRUKIT_CPU_SPLIT", "features")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plan = cpu.thread_plan(9, 6, 40, torch.float64)
    finally:
        torch.set_num_threads(threads)
    assert (plan.row_blocks, plan.feature_blocks, plan.threads) == (1, 2, 2)
    assert plan.launcher in ("openmp", "python")


def test_the_kernels_take_the_arguments_cpu_args_defines():
    """Every call site is built from ``_cpu_args``; the Numba kernels' positional signatures must
    be those fields, then the block's own."""
    import inspect

    from grukit.backends import _cpu_args, _cpu_kernels

    for kernel, spec in (
        (_cpu_kernels.forward, _cpu_args.FORWARD),
        (_cpu_kernels.backward, _cpu_args.BACKWARD),
    ):
        params = list(inspect.signature(kernel.py_func).parameters)
        assert params == [a.name for a in spec] + list(_cpu_args.BLOCK)
    assert _cpu_args.shape_of(_cpu_args.Arg("ws", "float", "T N kw 3H"), dict(T=2, N=3, kw=5, H=4)) == (
        2,
        3,
        5,
        12,
    )


@pytest.mark.parametrize("variants", [False, True], ids=["plain", "variants"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_the_cpu_backend_passes_the_shapes_cpu_args_documents(reset_after, variants, monkeypatch):
    from grukit.backends import _cpu_args, _cpu_base, _cpu_launch

    seen = []
    kw = (5 if reset_after else 4) + (3 if variants else 0)
    real = _cpu_launch.launch

    def spy(kernel, plan, args):
        spec, record = _cpu_args.SPECS[kernel.__name__]
        assert type(args) is record
        dims = dict(
            T=5,
            N=2,
            H=8,
            kw=kw,
            B=len(args.bounds),
            C=args.dgi.shape[0] if kernel.__name__ == "backward" else 0,
            I=3,
            G=args.gi.shape[0] if kernel.__name__ == "forward" else 0,
        )
        if kernel.__name__ == "forward":
            # the plain layer projects its input in the kernel (gi a chunk's buffer); the
            # variants' recurrence is given every step's projection
            assert (args.xin.size == 0) == variants
            assert args.gi.shape[0] == 5 if variants else 1 <= args.gi.shape[0] <= 5
        for a in spec:
            value = getattr(args, a.name)
            if a.kind in ("float", "int64"):
                expected = _cpu_args.shape_of(a, dims)
                optional = ("ws", "dghn", "xin", "wih", "bih")
                optional += (
                    "rmask",
                    "zm",
                    "zkey",
                    "zbuf",
                    "lng",
                    "lnb",
                    "stat",
                    "dgr",
                    "dhr",
                    "lnacc",
                    "part",
                )
                empty = a.name in optional and value.size == 0 and value.ndim == a.ndim  # off
                if variants and a.name in optional[5:]:  # on in training; zoneout p in eval
                    evaluation = kernel.__name__ == "forward" and not gru.training  # zoneout: p
                    if a.name == "zm":  # p in evaluation; in training the key instead
                        empty = value.shape == (1, 1, 1) if evaluation else value.size == 0
                    else:
                        empty = evaluation and a.name in ("rmask", "zkey", "zbuf") and value.size == 0
                assert value.shape == expected or empty, (kernel.__name__, a.name, value.shape, expected)
        seen.append(kernel.__name__)
        return real(kernel, plan, args)

    monkeypatch.setattr(_cpu_launch, "launch", spy)
    # the fused kernel in evaluation too (the plain layer's would take the lean one)
    monkeypatch.setenv(_cpu_base.LEAN_ENV, "0")
    options = dict(layer_norm=True, zoneout=0.1, recurrent_dropout=0.2) if variants else {}
    gru = grukit.GRU(3, 8, reset_after=reset_after, backend="cpu", **options)
    out, _ = gru(torch.randn(5, 2, 3))
    with torch.no_grad():
        gru.eval()(torch.randn(5, 2, 3))
    out.sum().backward()
    assert seen == ["forward", "forward", "backward"]
