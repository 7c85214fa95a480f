"""The fused cpu backend beyond the conformance suite: what it stores, what autograd, compile and
export see, its fallback rules, and its behaviour beside other torch work and thread counts."""

import warnings

import numpy as np
import pytest
import torch

import grukit
from grukit import backends
from grukit.backends import cpu
from tests.conftest import run_script

F64 = torch.float64


def _weights(I=3, H=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(*s, generator=g, dtype=dtype) * 0.5 for s in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))
    ]


@pytest.mark.parametrize("reset_after", [False, True])
def test_inference_stores_nothing_for_backward(reset_after):
    w_ih, w_hh, b_ih, b_hh = _weights()
    x, h0 = torch.randn(5, 2, 3), torch.zeros(2, 4)
    out, h_n, ws = torch.ops.grukit.gru_layer_forward(
        x, h0, w_ih, w_hh, b_ih, b_hh, None, reset_after, False, False
    )
    assert ws.numel() == 0
    out2, _, ws2 = torch.ops.grukit.gru_layer_forward(
        x, h0, w_ih, w_hh, b_ih, b_hh, None, reset_after, False, True
    )
    assert ws2.shape == (5, 2, 5 * 4 if reset_after else 4 * 4)  # r, z, n, h_prev (+ W_hn h + b_hn)
    assert torch.equal(out, out2)


def test_module_saves_only_when_a_gradient_is_needed(monkeypatch):
    """The forward saves for the backward only when a gradient is needed; eager inference calls
    the op's body directly (no op dispatch), everything else goes through the op."""
    seen, ops = [], []
    real_impl, real_op = cpu._forward_impl, cpu.gru_layer_forward

    def impl(*args):
        seen.append(args[9])  # the `save` flag (then matmul_bf16, zoneout)
        return real_impl(*args)

    def op(*args):
        ops.append(args[9])
        return real_op(*args)

    monkeypatch.setattr(cpu, "_forward_impl", impl)
    monkeypatch.setattr(cpu, "gru_layer_forward", op)
    gru = grukit.GRU(3, 4, 2, backend="cpu")  # named: auto runs short inference calls elsewhere
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        gru(x)
    with torch.inference_mode():
        gru(x)
    assert seen == [False] * 4 and ops == []
    gru(x)
    assert seen[4:] == [True, True] and ops == [True, True]
    gru.requires_grad_(False)
    gru(x)  # nothing requires grad
    assert seen[6:] == [False, False] and ops == [True, True]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        gru(x)  # autocast's policy is the op's: through the op
    assert ops[2:] == [False, False]


def test_second_order_gradient_raises_clearly():
    gru = grukit.GRU(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    out, _ = gru(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order gradients only.*backend='reference'"):
        torch.autograd.grad(g.sum(), x)


def test_reference_backend_gives_second_order_gradients():
    gru = grukit.GRU(3, 4, dtype=F64, backend="reference")
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(gru(x)[0].sum(), x, create_graph=True)
    torch.autograd.grad(g.sum(), x)


@pytest.mark.parametrize("reset_after", [False, True])
def test_torch_compile_sees_one_op_and_matches(reset_after):
    gru = grukit.GRU(3, 4, 2, bidirectional=True, reset_after=reset_after)
    x = torch.randn(6, 2, 3)
    expected = gru(x)
    compiled = torch.compile(gru, backend="aot_eager", fullgraph=True)
    got = compiled(x)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    got[0].sum().backward()  # the registered backward runs under compile too
    assert gru.weight_hh_l0.grad is not None


def test_torch_export_contains_the_custom_op():
    gru = grukit.GRU(3, 4, reset_after=True).eval()
    x = torch.randn(6, 2, 3)
    exported = torch.export.export(gru, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert "grukit.gru_layer_forward.default" in targets
    torch.testing.assert_close(exported.module()(x)[0], gru(x)[0])


def test_unavailable_kernels_fall_back_with_one_warning_and_explicit_raises(monkeypatch):
    monkeypatch.setattr(cpu, "kernels_available", lambda: "Numba is not installed (test)")
    monkeypatch.setattr(cpu, "_warned", False)
    gru = grukit.GRU(3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.warns(
        RuntimeWarning,
        match="fused cpu backend is unavailable, falling back to 'reference': Numba is not installed",
    ):
        gru(x)
    assert gru.backend_used == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gru(x)  # only once
    with pytest.raises(
        backends.BackendUnavailable, match="'cpu' cannot run this input: Numba is not installed"
    ):
        grukit.GRU(3, 4, backend="cpu")(x)


def test_interleaved_with_ordinary_torch_work():
    """Kernels, torch matrix products and torch.nn.GRU in turns, in one process and both thread
    settings, give the same numbers as each alone (timings are the benchmark's job)."""
    gru = grukit.GRU(16, 32, 2, bidirectional=True, reset_after=True)
    ref = torch.nn.GRU(16, 32, 2, bidirectional=True)
    ref.load_state_dict(gru.state_dict())
    x = torch.randn(40, 24, 16)  # large enough for the multi-threaded path
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    expected_mm = a @ b
    threads = torch.get_num_threads()
    try:
        for n in (1, threads):
            torch.set_num_threads(n)
            for _ in range(3):
                out, _ = gru(x)
                torch.testing.assert_close(a @ b, expected_mm)
                torch.testing.assert_close(out, ref(x)[0], rtol=1e-4, atol=1e-5)
                out.sum().backward()
    finally:
        torch.set_num_threads(threads)


def test_thread_count_does_not_change_results_beyond_rounding():
    gru = grukit.GRU(8, 64, dtype=F64)
    x = torch.randn(50, 32, 8, dtype=F64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gru(x)[0]
        torch.set_num_threads(max(2, threads))
        many = gru(x)[0]
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, many, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("chunked", [False, True], ids=["one-chunk", "chunk-per-step"])
@pytest.mark.parametrize("threads", ["openmp", "python"])
@pytest.mark.parametrize("split", ["none", "rows", "features"])
def test_every_thread_split_matches_the_reference(split, threads, chunked, monkeypatch):
    """The plan picks a split by size; force each one, on PyTorch's OpenMP threads and on our own,
    with the backward in one chunk or one chunk per step and the forward's input projection made
    whole first or by the kernel in chunks of 2 steps (the last one shorter; a row block a step
    at a time), on a small case with padding, both directions, both formulations, float64,
    outputs and all gradients, the input's included."""
    from torch.nn.utils.rnn import pack_sequence

    from grukit.backends import _cpu_base, _cpu_launch

    monkeypatch.setenv("GRUKIT_CPU_SPLIT", split)
    if chunked:
        monkeypatch.setattr(cpu, "_CHUNK_BYTES", 1)
        monkeypatch.setattr(cpu, "_CHUNK_ROWS", 1)
        monkeypatch.setattr(_cpu_base, "PROJECT_ROWS", 12)  # 2 steps of 6 rows
        monkeypatch.setattr(_cpu_base, "PROJECT_BLOCK_ROWS", 1)
        assert _cpu_base.projection_chunk(9, 6, 3, 1000) == 2
    else:
        monkeypatch.setenv(_cpu_base.PROJECT_ENV, "0")
        assert _cpu_base.projection_chunk(9, 6, 3, 1000) == 0
    if threads == "python":
        monkeypatch.setenv("GRUKIT_CPU_THREADS", "python")
    else:
        assert _cpu_launch._omp() is not None, "PyTorch's libgomp launcher should load here"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plan = _cpu_launch.plan(9, 6, 40, 8)
        assert (len(plan.rows) - 1, plan.parties) == {"none": (1, 1), "rows": (2, 1), "features": (1, 2)}[
            split
        ]
        for reset_after in (False, True):
            ref = grukit.GRU(
                3, 40, 2, bidirectional=True, dtype=F64, reset_after=reset_after, backend="reference"
            )
            fused = grukit.GRU(
                3, 40, 2, bidirectional=True, dtype=F64, reset_after=reset_after, backend="cpu"
            )
            fused.load_state_dict(ref.state_dict())
            seqs = [torch.randn(n, 3, dtype=F64, requires_grad=True) for n in (7, 9, 1, 8, 5, 9)]
            hx = torch.randn(4, 6, 40, dtype=F64)
            results = []
            for m in (ref, fused):
                out, h_n = m(pack_sequence(seqs, enforce_sorted=False), hx)
                loss = (out.data**2).sum() + (h_n**3).sum()
                results.append([out.data, h_n, *torch.autograd.grad(loss, [*m.parameters(), *seqs])])
            for a, b in zip(*results):
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    finally:
        torch.set_num_threads(threads)


def test_a_smaller_openmp_team_falls_back_to_our_threads(tmp_path):
    """With OMP_THREAD_LIMIT=1 OpenMP grants one thread where a feature split needs two: the
    launcher must notice before running anything and use its own threads, not wait forever."""
    out = run_script(
        tmp_path / "limited.py",
        "import torch, grukit\n"
        "from grukit.backends import _cpu_omp\n"
        "torch.set_num_threads(2)\n"
        "returned = []\n"
        "real = _cpu_omp.run\n"
        "def spy(*a):\n"
        "    returned.append(real(*a))\n"
        "    return returned[-1]\n"
        "_cpu_omp.run = spy\n"
        "ref = grukit.GRU(3, 40, dtype=torch.float64, backend='reference')\n"
        "fused = grukit.GRU(3, 40, dtype=torch.float64, backend='cpu')\n"
        "fused.load_state_dict(ref.state_dict())\n"
        "x = torch.randn(9, 2, 3, dtype=torch.float64)\n"
        "torch.testing.assert_close(fused(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)\n"
        "assert returned and not any(returned), returned\n"
        "print('ok')\n",
        OMP_THREAD_LIMIT="1",
        GRUKIT_CPU_SPLIT="features",
    )
    assert out == "ok"


def test_a_float32_inference_compiles_no_backward_and_no_float64(tmp_path):
    """Each kernel is compiled (or read from Numba's cache) the first time a call needs it: an
    inference in float32, short (the stream kernel) or long (the fused forward on two OpenMP
    threads), loads no backward kernel and no float64 specialisation. (A fresh machine compiles
    everything it loads, so each one skipped saves seconds of a first run.)"""
    out = run_script(
        tmp_path / "lazy.py",
        "import torch, grukit\n"
        "from grukit.backends import _cpu_kernels as K, _cpu_omp\n"
        "torch.set_num_threads(2)\n"
        "m = grukit.GRU(3, 64, backend='cpu')\n"
        "with torch.no_grad():\n"
        "    m(torch.randn(2, 1, 3))\n"
        "    m(torch.randn(50, 64, 3))\n"
        "assert m.backend_used == 'cpu', m.backend_used\n"
        "dtypes = {str(a.dtype) for sig in K.forward.signatures for a in sig[:1]}\n"
        "assert dtypes == {'float32'}, dtypes\n"
        "assert not K.backward.signatures, K.backward.signatures\n"
        "assert list(_cpu_omp._COMPILED) == [('forward', 4)], _cpu_omp._COMPILED\n"
        "print('ok')\n",
        GRUKIT_CPU_SPLIT="features",
    )
    assert out == "ok"


@pytest.mark.parametrize("packed", ["packed", "plain"])
@pytest.mark.parametrize("split", ["none", "rows", "features"])
def test_float32_products_packed_or_not_match_the_float64_reference(split, packed, monkeypatch):
    """Float32 calls multiply by ``W_hh`` through MKL's packed GEMM (``W_hh`` packed once per call
    and block) or, with ``GRUKIT_CPU_PACKED=0`` or without MKL, through plain sgemm / dot
    products: either, in every thread split, both formulations, with padding, agrees with the
    reference backend in float64 on the same weights to float32 rounding."""
    from torch.nn.utils.rnn import pack_sequence

    from grukit.backends import _blas, _cpu_base

    monkeypatch.setenv("GRUKIT_CPU_SPLIT", split)
    if packed == "plain":
        monkeypatch.setenv(_cpu_base.PACKED_ENV, "0")
        assert not _cpu_base.packed_products(np.float32)
    elif not _blas.has_packed_gemm():
        pytest.skip("no MKL packed GEMM in PyTorch's library")
    else:
        assert _cpu_base.packed_products(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for reset_after in (False, True):
            ref = grukit.GRU(
                3, 40, 2, bidirectional=True, dtype=F64, reset_after=reset_after, backend="reference"
            )
            fused = grukit.GRU(3, 40, 2, bidirectional=True, reset_after=reset_after, backend="cpu")
            fused.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
            lengths = (7, 9, 1, 8, 5, 9, 9, 3, 9)
            seqs = [torch.randn(n, 3, dtype=F64) for n in lengths]
            hx = torch.randn(4, len(lengths), 40, dtype=F64)
            results = []
            for m, dt in ((ref, F64), (fused, torch.float32)):
                out, h_n = m(pack_sequence([s.to(dt) for s in seqs], enforce_sorted=False), hx.to(dt))
                loss = (out.data**2).sum() + (h_n**3).sum()
                results.append([out.data, h_n, *torch.autograd.grad(loss, list(m.parameters()))])
            for a, b in zip(*results):
                torch.testing.assert_close(
                    b.double(), a, rtol=2e-4, atol=2e-5 * max(1.0, a.abs().max().item())
                )
    finally:
        torch.set_num_threads(threads)


def test_packed_products_split_small_batches_by_rows():
    """With packed products a batch of a few rows per thread is split by rows (measured faster,
    docs/performance.md), without them by features; and a layer whose forward fixed one of the
    two finds it again (``plan_for``), whichever kind of product its backward asks about."""
    from grukit.backends import _cpu_launch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        packed = _cpu_launch.plan(500, 8, 128, 4, packed=True)
        plain = _cpu_launch.plan(500, 8, 128, 4, packed=False)
        assert (packed.rows, packed.features) == ((0, 4, 8), (0, 128))
        assert (plain.rows, plain.features) == ((0, 8), (0, 64, 128))
        assert _cpu_launch.plan(500, 2, 256, 4, packed=True).features == (0, 128, 256)  # 1 row per thread
        assert _cpu_launch.plan(100, 16, 1024, 4, packed=True).features == (0, 512, 1024)  # W_hh 12 MiB
        for asked in (False, True):
            assert _cpu_launch.plan_for((0, 128), 500, 8, 128, 4, asked) == packed
            assert _cpu_launch.plan_for((0, 64, 128), 500, 8, 128, 4, asked) == plain
    finally:
        torch.set_num_threads(threads)


def test_features_are_split_only_in_blocks_of_at_least_64(monkeypatch):
    """A feature split pays from two blocks of 64 features on (measured, docs/performance.md):
    at H = 64 one thread runs the loop, at H = 128 two blocks of 64; with four threads H = 256
    gets four blocks, H = 128 still two. A forced split still cuts small H finely (the tests')."""
    from grukit.backends import _cpu_launch

    monkeypatch.delenv("GRUKIT_CPU_SPLIT", raising=False)
    for threads, H, features in [
        (2, 64, (0, 64)),
        (2, 128, (0, 64, 128)),
        (4, 128, (0, 64, 128)),
        (4, 256, (0, 64, 128, 192, 256)),
    ]:
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        assert _cpu_launch.plan(1000, 1, H, 4).features == features, (threads, H)
    monkeypatch.setenv("GRUKIT_CPU_SPLIT", "features")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert _cpu_launch.plan(1000, 1, 64, 4).features == (0, 32, 64)


def test_a_small_batch_on_the_calling_thread_runs_mkl_sequentially_and_restores_it():
    """A one-block launch of at most SEQUENTIAL_STEP_ROWS rows sets this thread's MKL thread count
    to 1 for the kernel (whose per-step products are too small for a team) and puts the old
    setting back afterwards, also when the kernel raises; larger batches keep MKL's team. The
    setting is read back from MKL itself (``mkl_set_num_threads_local`` returns the previous one)."""
    from grukit.backends import _cpu_launch

    if _cpu_launch._mkl_local_setter() is None:
        pytest.skip("PyTorch's BLAS is not MKL")
    seen = []

    def kernel(*args):
        now = _cpu_launch._mkl_threads_local(0)  # 0: no thread-local setting
        _cpu_launch._mkl_threads_local(now)
        seen.append(now)
        if args[0] == "raise":
            raise ValueError("kernel failed")

    small = _cpu_launch.Plan(rows=(0, _cpu_launch.SEQUENTIAL_STEP_ROWS), features=(0, 64))
    large = _cpu_launch.Plan(rows=(0, _cpu_launch.SEQUENTIAL_STEP_ROWS + 1), features=(0, 64))
    _cpu_launch._mkl_threads_local(0)
    _cpu_launch.launch(kernel, small, ("ok",))
    _cpu_launch.launch(kernel, large, ("ok",))
    with pytest.raises(ValueError, match="kernel failed"):
        _cpu_launch.launch(kernel, small, ("raise",))
    assert seen == [1, 0, 1]
    assert _cpu_launch._mkl_threads_local(0) == 0  # nothing left behind on this thread


@pytest.mark.parametrize("reset_after", [False, True])
def test_float32_variants_on_packed_row_blocks_match_the_float64_reference(reset_after):
    """The variant kernels (layer norm, zoneout) on a small batch split by rows with packed
    products: outputs and gradients against the reference backend in float64."""
    from grukit.backends import _blas

    if not _blas.has_packed_gemm():
        pytest.skip("no MKL packed GEMM in PyTorch's library")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kw = dict(layer_norm=True, zoneout=0.25, reset_after=reset_after)
        ref = grukit.GRU(5, 64, dtype=F64, backend="reference", **kw).eval()
        fused = grukit.GRU(5, 64, backend="cpu", **kw).eval()
        fused.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
        x = torch.randn(100, 8, 5, dtype=F64)
        results = []
        for m, dt in ((ref, F64), (fused, torch.float32)):
            out, h_n = m(x.to(dt))
            loss = (out**2).sum() + h_n.sum()
            results.append([out, h_n, *torch.autograd.grad(loss, list(m.parameters()))])
        for a, b in zip(*results):
            torch.testing.assert_close(b.double(), a, rtol=2e-4, atol=2e-5 * max(1.0, a.abs().max().item()))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("options", [{}, {"layer_norm": True}, {"zoneout": 0.2}])
def test_backward_fills_no_zero_gradient_for_the_workspace(options):
    """The saved workspace (an output of the forward op only so that autograd keeps it) gets no
    zero-filled gradient in the backward: filling one of (T, N, kw*H) cost about a tenth of a
    training call. Gradients still equal the reference's, whichever outputs the loss uses."""
    T, N, I, H = 6, 3, 2, 5
    torch.manual_seed(0)
    gru = grukit.GRU(I, H, backend="cpu", dtype=torch.float64, **options)
    ref = grukit.GRU(I, H, backend="reference", dtype=torch.float64, **options)
    ref.load_state_dict(gru.state_dict())
    gru.train(False), ref.train(False)  # zoneout deterministic; gradients still flow
    x = torch.randn(T, N, I, dtype=torch.float64)
    with torch.profiler.profile(record_shapes=True) as prof:
        out, h_n = gru(x)
        (out.sum() + h_n.sum()).backward()
    big = [
        e
        for e in prof.events()
        if e.name in ("aten::fill_", "aten::zero_", "aten::zeros")
        and any(len(s) == 3 and s[0] == T and s[2] > H for s in e.input_shapes)
    ]
    assert big == []
    for use in ("out", "h_n"):  # one output unused: its gradient is None, not zeros
        for m in (gru, ref):
            m.zero_grad()
            out, h_n = m(x)
            (out.pow(2).sum() if use == "out" else h_n.pow(2).sum()).backward()
        for (name, p), q in zip(gru.named_parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=name)
