"""bfloat16 products (``GRU(matmul_dtype=torch.bfloat16)``, bfloat16 autocast; issue 17 point 4).

The oracle is written here from the GRU's equations, in float64, with every matrix product's
operands rounded to bfloat16 by torch (``Tensor.bfloat16()``): x and W_ih for the input
projection, h_{t-1} (or r * h_{t-1}) and W_hh at every step. The kernels accumulate in float32,
so they agree with it to float32 accumulation error, except where a state lies so close to a
bfloat16 rounding boundary that the float32 and float64 trajectories round it differently
(then one operand moves by one bfloat16 step). Measured on a 2-core AMD EPYC (emulated by
MKL): at most 1.1e-4 from the oracle over 30 steps, while the same model in float32 lies
1.9e-3 to 2.6e-3 away; hence ``ORACLE_ATOL`` and the check that float32 is farther. The
gradients are those of the exact products at the forward's values (the backward is float32, the
rounding passes gradients straight through) and are compared with the oracle's autograd.

``GRUKIT_BF16=always`` forces the bfloat16 path on CPUs without it (MKL emulates it), so every
path runs on any machine; the fallback tests set ``off`` or check what ``auto`` does here.
"""

import warnings

import pytest
import torch

import grukit
from grukit import modules
from grukit.backends import _bf16, cpu

pytestmark = pytest.mark.skipif(cpu.kernels_available() is not None, reason="no cpu kernels")

ORACLE_ATOL = 4e-4  # from the oracle (module docstring)
FP32_GAP = 5e-4  # float32 results lie at least this far: the products did run in bfloat16


def _rb(t):
    """``t`` rounded to bfloat16, in float64."""
    return t.to(torch.bfloat16).to(torch.float64)


def _mm(a, b):
    """``a @ b`` with bfloat16-rounded operands; its gradient is the exact product's, as the
    kernels' float32 backward computes it from the unrounded operands."""
    exact = a.double() @ b.double()
    return exact + (_rb(a.float().double()) @ _rb(b.float().double()) - exact).detach()


def _oracle(m: grukit.GRU, x: torch.Tensor, lengths=None):
    """Output (T, N, D*H) and h_n of a GRU in float64 with bfloat16-rounded product operands.
    ``x`` (T, N, I) float32; ``lengths`` (N,): a row keeps its state and outputs 0 past its end."""
    T, N, _ = x.shape
    H, D = m.hidden_size, m.num_directions
    layer_in = x.double()
    finals = []
    for layer in range(m.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh, b_ih, b_hh = (
                getattr(m, k + sfx).double() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            gi = _mm(layer_in, w_ih.t()) + b_ih  # (T, N, 3H)
            h = torch.zeros(N, H, dtype=torch.float64)
            out = [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                a = gi[t]
                if m.reset_after:
                    gh = _mm(h, w_hh.t()) + b_hh
                    r, z = (
                        torch.sigmoid(a[:, :H] + gh[:, :H]),
                        torch.sigmoid(a[:, H : 2 * H] + gh[:, H : 2 * H]),
                    )
                    n = torch.tanh(a[:, 2 * H :] + r * gh[:, 2 * H :])
                else:
                    gh = _mm(h, w_hh[: 2 * H].t()) + b_hh[: 2 * H]
                    r, z = (
                        torch.sigmoid(a[:, :H] + gh[:, :H]),
                        torch.sigmoid(a[:, H : 2 * H] + gh[:, H : 2 * H]),
                    )
                    n = torch.tanh(a[:, 2 * H :] + _mm(r * h, w_hh[2 * H :].t()) + b_hh[2 * H :])
                new = (1 - z) * n + z * h
                if lengths is not None:
                    live = (t < lengths).double().unsqueeze(1)  # (N, 1)
                    out[t] = new * live
                    h = live * new + (1 - live) * h
                else:
                    out[t] = h = new
            outs.append(torch.stack(out))
            finals.append(h)
        layer_in = torch.cat(outs, -1)
    return layer_in, torch.stack(finals)


def _twins(I, H, **kw):
    """A bfloat16-product GRU and the same weights in plain float32."""
    m = grukit.GRU(I, H, matmul_dtype=torch.bfloat16, **kw)
    m32 = grukit.GRU(I, H, **kw)
    m32.load_state_dict(m.state_dict())
    return m, m32


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setenv(_bf16.ENV, "always")


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("split", ["none", "rows", "features"])
def test_inference_matches_the_bf16_oracle(always, monkeypatch, reset_after, split):
    monkeypatch.setenv("GRUKIT_CPU_SPLIT", split)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two blocks even on one core
    m, m32 = _twins(24, 48, reset_after=reset_after, num_layers=2, backend="cpu")
    x = torch.randn(12, 6, 24)
    with torch.no_grad():
        y, h = m(x)
        y32, _ = m32(x)
    oy, oh = _oracle(m, x)
    torch.testing.assert_close(y.double(), oy, rtol=0, atol=ORACLE_ATOL)
    torch.testing.assert_close(h.double(), oh, rtol=0, atol=ORACLE_ATOL)
    assert (y - y32).abs().max() > FP32_GAP


@pytest.mark.parametrize("reset_after", [False, True])
def test_bidirectional_and_lengths(always, reset_after):
    m, _ = _twins(8, 16, reset_after=reset_after, bidirectional=True, batch_first=True)
    x = torch.randn(5, 9, 8)  # (N, T, I)
    lengths = torch.tensor([9, 7, 4, 9, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, h = m(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    oy, oh = _oracle(m, x.transpose(0, 1), lengths)
    torch.testing.assert_close(y.double(), oy.transpose(0, 1), rtol=0, atol=ORACLE_ATOL)
    torch.testing.assert_close(h.double(), oh, rtol=0, atol=ORACLE_ATOL)


@pytest.mark.parametrize("reset_after", [False, True])
def test_gradients_straight_through(always, reset_after):
    m, m32 = _twins(10, 20, reset_after=reset_after)
    x = torch.randn(8, 3, 10, requires_grad=True)
    w = torch.randn(8, 3, 20)
    (m(x)[0] * w).sum().backward()
    m64 = grukit.GRU(10, 20, reset_after=reset_after, dtype=torch.float64)
    m64.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    x64 = x.detach().double().requires_grad_()
    # the oracle reads m64's float64 parameters
    oy, _ = _oracle(m64, x64)
    (oy * w.double()).sum().backward()
    # measured: 2.2e-7 (dx, of scale 1) and at most 3e-7 relative (parameters); float32's own
    # gradients lie 5e-4 to 1.7e-3 away
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0, atol=2e-5)
    for name, p in m.named_parameters():
        ref = dict(m64.named_parameters())[name].grad
        torch.testing.assert_close(p.grad.double(), ref, rtol=0, atol=2e-5 * ref.abs().max().item())


def test_variants_take_bf16_products(always):
    """Layer norm, zoneout and recurrent dropout run the same kernels (their own oracles are in
    test_cpu_variants); here: the products did run in bfloat16 and gradients reach every input."""
    kw = dict(layer_norm=True, zoneout=0.1, recurrent_dropout=0.2, reset_after=True)
    m, m32 = _twins(12, 24, **kw)
    x = torch.randn(10, 4, 12, requires_grad=True)
    m.eval(), m32.eval()
    with torch.no_grad():
        gap = (m(x)[0] - m32(x)[0]).abs().max().item()
    assert FP32_GAP < gap < 5e-2
    m.train()
    m(x)[0].square().sum().backward()
    assert x.grad is not None and x.grad.isfinite().all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in m.parameters())


def test_autocast_bf16_uses_bf16_products(always):
    m = grukit.GRU(16, 32, backend="cpu")
    x = torch.randn(7, 3, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y, h = m(x)
    assert y.dtype == torch.float32 and h.dtype == torch.float32
    torch.testing.assert_close(y.double(), _oracle(m, x)[0], rtol=0, atol=ORACLE_ATOL)


def _plain(m32, x):
    with torch.no_grad():
        return m32(x)[0]


def test_off_is_float32_with_one_warning(monkeypatch):
    monkeypatch.setenv(_bf16.ENV, "off")
    monkeypatch.setattr(modules, "_bf16_warned", False)
    m, m32 = _twins(8, 16, backend="cpu")
    x = torch.randn(5, 2, 8)
    with pytest.warns(RuntimeWarning, match="GRUKIT_BF16=off"):
        with torch.no_grad():
            y = m(x)[0]
    torch.testing.assert_close(y, _plain(m32, x), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            m(x)  # once per process


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(_bf16.ENV, raising=False)
    monkeypatch.setattr(modules, "_bf16_warned", True)
    m, m32 = _twins(8, 16, backend="cpu")
    x = torch.randn(6, 3, 8)
    with torch.no_grad():
        y = m(x)[0]
    if _bf16.hardware():
        torch.testing.assert_close(y.double(), _oracle(m, x)[0], rtol=0, atol=ORACLE_ATOL)
    else:  # emulation would only lose precision: the products stay float32
        torch.testing.assert_close(y, _plain(m32, x), rtol=0, atol=0)


def test_other_backends_keep_float32_and_say_so(always, monkeypatch):
    monkeypatch.setattr(modules, "_bf16_warned", False)
    m, m32 = _twins(8, 16, backend="reference")
    x = torch.randn(4, 2, 8)
    with pytest.warns(RuntimeWarning, match="'reference' backend"):
        y = _plain(m, x)
    torch.testing.assert_close(y, _plain(m32, x))


def test_bad_values(monkeypatch):
    with pytest.raises(ValueError, match="matmul_dtype must be None, torch.float32 or torch.bfloat16"):
        grukit.GRU(4, 8, matmul_dtype=torch.float16)
    assert grukit.GRU(4, 8, matmul_dtype=torch.float32).matmul_dtype is None
    assert "matmul_dtype=torch.bfloat16" in repr(grukit.GRU(4, 8, matmul_dtype=torch.bfloat16))
    monkeypatch.setenv(_bf16.ENV, "sometimes")
    with pytest.raises(ValueError, match="GRUKIT_BF16 must be one of auto, always, off, got 'sometimes'"):
        _bf16.mode()


def test_rounding_matches_torch():
    """The kernels' float32 -> bfloat16 conversion against torch's (nearest even; NaN, infinities,
    ties, subnormals)."""
    k = cpu.kernels()
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, -3e-39, 3.4e38])
    ties = (torch.arange(1, 200, dtype=torch.int32) * 65536 + 32768).view(torch.float32)  # halfway
    x = torch.cat([special, ties, -ties, torch.randn(5000) * 10 ** torch.randint(-30, 30, (5000,))])
    x = x.float()
    got = torch.zeros(x.shape[0], dtype=torch.int16)
    k.to_bf16(x.numpy(), got.numpy().view("uint16"))
    torch.testing.assert_close(got, x.bfloat16().view(torch.int16), rtol=0, atol=0)
    nan = torch.zeros(1, dtype=torch.int16)
    k.to_bf16(torch.tensor([float("nan")]).numpy(), nan.numpy().view("uint16"))
    assert nan.view(torch.bfloat16).isnan().all()


def test_compile_traces_through(always):
    """``_bf16.enabled`` is a constant to dynamo (it would otherwise trace into the BLAS loader)."""
    m = grukit.GRU(8, 16, matmul_dtype=torch.bfloat16, backend="cpu")
    x = torch.randn(5, 3, 8)
    torch.testing.assert_close(torch.compile(m, fullgraph=True)(x)[0], m(x)[0], rtol=0, atol=0)
