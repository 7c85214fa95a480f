"""The GRU variants in the fused ``cpu`` kernels (issue 14, parts 2 and 5).

The oracle is the ``reference`` backend (``grukit.functional``), which ``tests/test_variants.py``
checks against implementations written from the papers (haste's LayerNormGRU, Krueger et al.'s
zoneout, Gal and Ghahramani's recurrent dropout); here the fused kernels must agree with it for
every option and combination, forward and every gradient, with the same fixed masks, in every
thread split the kernels have. (The invariance and evaluation-mode properties in
``test_variants.py`` run on the default backend, which for these variants is now this one.)
"""

from __future__ import annotations

import itertools

import pytest
import torch

import grukit
from grukit import functional
from grukit._layer_options import LayerOptions
from grukit.backends import _cpu_launch, cpu

F64 = dict(rtol=1e-9, atol=1e-10)
F32 = dict(rtol=2e-4, atol=2e-5)
# (layer_norm, zoneout: 0 off / 1 evaluation / 2 training mask / 3 training Philox key,
# recurrent dropout)
COMBOS = [c for c in itertools.product([False, True], [0, 1, 2, 3], [False, True]) if any(c)]


def _case(seed, dtype, T, N, I, H, layer_norm, zoneout, dropout):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    params = dict(
        x=rnd(T, N, I),
        h0=rnd(N, H),
        w_ih=rnd(3 * H, I, scale=0.5),
        w_hh=rnd(3 * H, H, scale=0.4),
        b_ih=rnd(3 * H),
        b_hh=rnd(3 * H),
    )
    norms = None
    if layer_norm:  # non-trivial gains and shifts
        norms = [(torch.rand(3 * H, generator=g, dtype=dtype) + 0.5).requires_grad_(), rnd(3 * H)]
        norms += [(torch.rand(3 * H, generator=g, dtype=dtype) + 0.5).requires_grad_(), rnd(3 * H)]
    zoneout_mask = (torch.rand(T, N, H, generator=g) < 0.3).to(dtype) if zoneout == 2 else None
    zoneout_key = None
    if zoneout == 3:  # the kernels compute the mask from the key; the reference materialises it
        k0, k1 = torch.randint(0, 2**32, (2,), generator=g).tolist()
        zoneout_key = torch.tensor([k0, k1, round(0.3 * 2**32)])
    recurrent_mask = None
    if dropout:
        recurrent_mask = (torch.rand(N, H, generator=g) < 0.7).to(dtype) / 0.7
    options = LayerOptions(
        norm_ih=tuple(norms[:2]) if norms else None,
        norm_hh=tuple(norms[2:]) if norms else None,
        zoneout=0.3 if zoneout else 0.0,
        zoneout_mask=zoneout_mask,
        zoneout_key=zoneout_key,
        recurrent_mask=recurrent_mask,
    )
    leaves = list(params.values()) + (norms or [])
    return params, options, leaves


def _run(layer, params, options, leaves, reset_after, reverse, lengths, seed=7):
    p = params
    out, h_n = layer(
        p["x"],
        p["h0"],
        p["w_ih"],
        p["w_hh"],
        p["b_ih"],
        p["b_hh"],
        reset_after=reset_after,
        reverse=reverse,
        lengths=lengths,
        options=options,
    )
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=out.dtype)
    w_h = torch.randn(h_n.shape, generator=g, dtype=out.dtype)
    grads = torch.autograd.grad((out * w_out).sum() + (h_n * w_h).sum(), leaves)
    return [out, h_n, *grads]


@pytest.mark.parametrize("split", ["none", "rows", "features", "3 unequal feature blocks"])
@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_fused_variants_equal_the_reference_forward_and_every_gradient(reset_after, split, monkeypatch):
    three = split.startswith("3")
    monkeypatch.setenv("GRUKIT_CPU_SPLIT", "features" if three else split)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3 if three else 2)  # a split needs threads
    H = 40 if three else 16  # 3 blocks: 16, 8 and 16 features
    if three:
        assert _cpu_launch.plan(6, 5, H, 8).features == (0, 16, 24, 40)
    names = ["output", "h_n", "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "g_ih", "c_ih", "g_hh", "c_hh"]
    for k, (layer_norm, zoneout, dropout) in enumerate(COMBOS):
        for reverse, packed in itertools.product([False, True], [False, True]):
            params, options, leaves = _case(k, torch.float64, 6, 5, 3, H, layer_norm, zoneout, dropout)
            lengths = torch.tensor([6, 3, 5, 1, 6]) if packed else None
            want = _run(functional.gru_layer, params, options, leaves, reset_after, reverse, lengths)
            got = _run(cpu._layer, params, options, leaves, reset_after, reverse, lengths)
            for name, a, b in zip(names, got, want):
                where = (
                    f"{name}: layer_norm={layer_norm} zoneout={zoneout} dropout={dropout} "
                    f"reverse={reverse} packed={packed}"
                )
                torch.testing.assert_close(a, b, **F64, msg=lambda m: f"{where}\n{m}")


@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_fused_variants_in_float32_stay_within_float32_rounding(reset_after):
    for k, (layer_norm, zoneout, dropout) in enumerate(COMBOS):
        params, options, leaves = _case(k, torch.float32, 20, 4, 8, 32, layer_norm, zoneout, dropout)
        want = _run(functional.gru_layer, params, options, leaves, reset_after, False, None)
        got = _run(cpu._layer, params, options, leaves, reset_after, False, None)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **F32)


@pytest.mark.parametrize(
    "option", ["layer_norm", "zoneout_eval", "zoneout_train", "zoneout_key", "recurrent_dropout", "all"]
)
@pytest.mark.parametrize("reset_after", [False, True], ids=["reset_before", "reset_after"])
def test_gradcheck_of_each_variant_through_the_fused_backend(reset_after, option):
    on = dict(
        layer_norm=(True, 0, False),
        zoneout_eval=(False, 1, False),
        zoneout_train=(False, 2, False),
        zoneout_key=(False, 3, False),
        recurrent_dropout=(False, 0, True),
        all=(True, 2, True),
    )
    params, options, leaves = _case(3, torch.float64, 4, 3, 2, 4, *on[option])
    n = len(params)
    lengths = torch.tensor([4, 2, 3])

    def f(*tensors):
        p = dict(zip(params, tensors[:n]))
        norms = tensors[n:]
        o = options
        if norms:
            o = LayerOptions(
                norm_ih=tuple(norms[:2]),
                norm_hh=tuple(norms[2:]),
                zoneout=o.zoneout,
                zoneout_mask=o.zoneout_mask,
                zoneout_key=o.zoneout_key,
                recurrent_mask=o.recurrent_mask,
            )
        return cpu._layer(
            p["x"],
            p["h0"],
            p["w_ih"],
            p["w_hh"],
            p["b_ih"],
            p["b_hh"],
            reset_after=reset_after,
            reverse=False,
            lengths=lengths,
            options=o,
        )

    assert torch.autograd.gradcheck(f, tuple(leaves), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 1, 128), (40, 64, 32)], ids=["features", "rows"])
def test_every_variant_keeps_the_plain_gru_s_thread_split(shape, monkeypatch):
    # the layer norm's statistics are combined across feature blocks, so nothing forces one block
    plans = []
    real = _cpu_launch.launch

    def spy(kernel, plan, args):
        plans.append(plan)
        return real(kernel, plan, args)

    monkeypatch.setattr(_cpu_launch, "launch", spy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    T, N, H = shape
    x = torch.randn(T, N, 8)
    expected = _cpu_launch.plan(T, N, H, 4)
    assert (len(expected.rows) - 1) * expected.parties == 2  # a split, of the kind the id says
    for options in (dict(layer_norm=True), dict(zoneout=0.1), dict(recurrent_dropout=0.2)):
        plans.clear()
        grukit.GRU(8, H, backend="cpu", **options)(x)[0].sum().backward()
        assert plans == [expected, expected], options


def test_module_training_with_every_variant_runs_fused_and_reproduces_the_reference():
    def build(backend):
        torch.manual_seed(0)
        return grukit.GRU(
            3,
            8,
            2,
            bidirectional=True,
            layer_norm=True,
            zoneout=0.2,
            recurrent_dropout=0.3,
            weight_dropout=0.2,
            dropout=0.1,
            dtype=torch.float64,
            backend=backend,
        ).train()

    x = torch.randn(9, 4, 3, dtype=torch.float64)
    results = []
    for backend in ("cpu", "reference"):
        model = build(backend)
        torch.manual_seed(1)  # the same masks for both
        out, h_n = model(x)
        (out.sum() + h_n.square().sum()).backward()
        assert model.backend_used == backend
        results.append([out, h_n] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **F64)


def test_torch_func_grad_through_the_fused_variants():
    model = grukit.GRU(3, 6, layer_norm=True, zoneout=0.2, dtype=torch.float64, backend="cpu").eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = dict(model.named_parameters())

    def loss(p):
        return torch.func.functional_call(model, p, (x,))[0].square().sum()

    got = torch.func.grad(loss)(params)
    loss(params).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, **F64)


def test_the_variant_ops_pass_torch_library_opcheck():
    T, N, H = 3, 2, 4
    gi = torch.randn(T, N, 3 * H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(N, H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * H, dtype=torch.float64, requires_grad=True)
    g = torch.rand(3 * H, dtype=torch.float64).add(0.5).requires_grad_()
    c = torch.randn(3 * H, dtype=torch.float64, requires_grad=True)
    rm = torch.ones(N, H, dtype=torch.float64)
    zm = (torch.rand(T, N, H) < 0.5).double()
    key = torch.tensor([12345, 67890, round(0.5 * 2**32)])
    for reset_after in (False, True):
        for mask, k in ((zm, None), (None, key)):
            args = (gi, h0, w, b, None, g, c, rm, mask, k, 0.2, reset_after, False, True, [0, H])
            torch.library.opcheck(torch.ops.grukit.gru_recurrence_forward.default, args)


@pytest.mark.parametrize("reset_after", [False, True])
def test_evaluation_zoneout_without_a_gradient_runs_the_plain_op(reset_after, monkeypatch):
    """In evaluation zoneout is a fixed blend, ``h_t = p h_{t-1} + (1 - p) h'_t``, which the plain
    op runs (with its input projection in the kernel, across chunks: T = 300 at N = 3) when no
    gradient is needed; it must equal the reference, padded sequences and both directions
    included, and a call that needs a gradient must still take the variants' op."""
    from torch.nn.utils.rnn import pack_sequence

    from grukit.backends import _cpu_variants

    calls = []
    real = _cpu_variants.layer
    monkeypatch.setattr(_cpu_variants, "layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(bidirectional=True, zoneout=0.3, reset_after=reset_after, dtype=torch.float64)
    ref = grukit.GRU(5, 24, 2, backend="reference", **kw).eval()
    fused = grukit.GRU(5, 24, 2, backend="cpu", **kw).eval()
    fused.load_state_dict(ref.state_dict())
    seqs = [torch.randn(n, 5, dtype=torch.float64) for n in (300, 171, 299)]
    with torch.no_grad():
        want, want_h = ref(pack_sequence(seqs, enforce_sorted=False))
        got, got_h = fused(pack_sequence(seqs, enforce_sorted=False))
    assert calls == []
    torch.testing.assert_close(got.data, want.data, **F64)
    torch.testing.assert_close(got_h, want_h, **F64)
    out, _ = fused(pack_sequence(seqs, enforce_sorted=False))  # parameters need a gradient
    assert len(calls) == 4  # 2 layers x 2 directions
    torch.testing.assert_close(out.data, want.data, **F64)


@pytest.mark.parametrize(
    "options, dynamic",
    [(dict(layer_norm=True), False), (dict(zoneout=0.2, recurrent_dropout=0.3), True)],
)
def test_torch_compile_fullgraph_of_the_variants_matches_eager(options, dynamic):
    """The variants' layer traces in one graph, with static or symbolic shapes (under compile
    its thread plan has one feature block; the zoneout key is drawn with tensor ops) and, with
    the same seed, trains exactly as eager; each call draws new masks."""
    torch.manual_seed(0)
    model = grukit.GRU(3, 8, 2, backend="cpu", dtype=torch.float64, **options)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=dynamic)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    results = []
    for run in (compiled, model):
        model.zero_grad()
        torch.manual_seed(1)
        out, h_n = run(x)
        (out.sum() + h_n.square().sum()).backward()
        results.append([out, h_n, *(p.grad.clone() for p in model.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if options.get("zoneout"):
        assert not torch.equal(compiled(x)[0], compiled(x)[0])
