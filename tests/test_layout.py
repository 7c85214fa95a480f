"""The layout module against the frameworks' documented conventions
(shared research: conventions.md), block by block."""

import torch

from grukit.convert import layout


def _params(H=3, I=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(3 * H, I, generator=g),
        torch.randn(3 * H, H, generator=g),
        torch.randn(3 * H, generator=g),
        torch.randn(3 * H, generator=g),
    ]


def test_swap_exchanges_r_and_z_and_is_its_own_inverse():
    t = torch.arange(9.0)
    assert layout.swap_rz(t).tolist() == [3, 4, 5, 0, 1, 2, 6, 7, 8]
    m = torch.randn(9, 4)
    assert torch.equal(layout.swap_rz(layout.swap_rz(m)), m)
    assert torch.equal(layout.swap_rz(m.T, 1), layout.swap_rz(m).T)


def test_onnx_blocks_are_z_r_h_and_biases_are_input_then_recurrent():
    w_ih, w_hh, b_ih, b_hh = _params()
    H = 3
    W, R, B = layout.to_onnx(w_ih, w_hh, b_ih, b_hh)
    assert torch.equal(W[:H], w_ih[H : 2 * H]) and torch.equal(W[H : 2 * H], w_ih[:H])  # z, r
    assert torch.equal(R[2 * H :], w_hh[2 * H :])  # h (n)
    assert torch.equal(B[: 3 * H], layout.swap_rz(b_ih)) and torch.equal(B[3 * H :], layout.swap_rz(b_hh))
    back = layout.from_onnx(W, R, B)
    assert all(
        torch.equal(back[k], v)
        for k, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh))
    )
    zeros = layout.from_onnx(W, R, None)  # ONNX's default B is zero
    assert not zeros["bias_ih"].any() and not zeros["bias_hh"].any()


def test_keras_kernels_are_transposed_z_r_h_columns():
    w_ih, w_hh, b_ih, b_hh = _params()
    H = 3
    kernel, rec, bias = layout.to_keras(w_ih, w_hh, b_ih, b_hh, reset_after=True)
    assert kernel.shape == (2, 9) and rec.shape == (3, 9) and bias.shape == (2, 9)
    assert torch.equal(kernel[:, :H], w_ih[H : 2 * H].T)  # z first
    assert torch.equal(rec[:, H : 2 * H], w_hh[:H].T)  # then r
    back = layout.from_keras(kernel, rec, bias, reset_after=True)
    assert all(
        torch.equal(back[k], v)
        for k, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh))
    )
    _, _, folded = layout.to_keras(w_ih, w_hh, b_ih, b_hh, reset_after=False)
    assert folded.shape == (9,) and torch.equal(folded, layout.swap_rz(b_ih + b_hh))
    assert len(layout.to_keras(w_ih, w_hh, None, None, reset_after=True)) == 2  # use_bias=False
