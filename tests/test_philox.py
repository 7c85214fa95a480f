"""Zoneout's counter-based masks (``grukit.backends._philox``).

Oracles: Random123's published known-answer vectors for Philox4x32-10 (the ones its
``kat_vectors`` file lists, which TensorFlow's and others' Philox tests also use), and a
pure-Python Philox written here from the paper's round function, through which the mask's
definition (``m[t, b, j] = philox((j % Q, b, t, 0), key)[j // Q] < thr``) is spelled out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import grukit
from grukit._layer_options import LayerOptions, draw_zoneout_key
from grukit.backends import _philox

KAT = [  # (counter, key, output)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _python_philox(ctr, key):
    """Philox4x32-10 in plain Python integers (Salmon et al. 2011, the round and key schedule)."""
    c, (k0, k1) = list(ctr), key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return tuple(c)


def _python_mask(key, T, N, H):
    k0, k1, thr = (int(v) for v in key)
    Q = math.ceil(H / 4)
    m = np.zeros((T, N, H))
    for t in range(T):
        for b in range(N):
            for j in range(H):
                m[t, b, j] = _python_philox((j % Q, b, t, 0), (k0, k1))[j // Q] < thr
    return m


@pytest.mark.parametrize("ctr, key, want", KAT)
def test_philox_matches_random123s_known_answers(ctr, key, want):
    assert _python_philox(ctr, key) == want
    u = np.uint64
    got = _philox.philox4x32_10(*(u(v) for v in ctr), u(key[0]), u(key[1]))
    assert tuple(int(v) for v in got) == want


@pytest.mark.parametrize("H", [1, 4, 6, 13, 16])
def test_the_mask_is_the_definition(H):
    key = np.array([0x12345678, 0x9ABCDEF0, round(0.4 * 2**32)])
    got = _philox.mask(key, 3, 2, H)
    np.testing.assert_array_equal(got, _python_mask(key, 3, 2, H))


def test_a_feature_block_computes_its_own_slice_of_the_row():
    """The kernels' feature blocks (any j0:j1) compute exactly their slice of the whole row."""
    key = np.array([7, 11, round(0.5 * 2**32)])
    H = 13
    full = _philox.mask(key, 1, 3, H)[0, 2]
    for j0 in range(H):
        for j1 in range(j0 + 1, H + 1):
            dst = np.full(H, -1.0)
            _philox.mask_row(key, 0, 2, j0, j1, H, dst)
            np.testing.assert_array_equal(dst[: j1 - j0], full[j0:j1])
            assert (dst[j1 - j0 :] == -1).all()  # nothing past the slice is written


def test_rate_and_independence():
    torch.manual_seed(0)
    p = 0.1
    key = draw_zoneout_key(p).numpy()
    assert key[2] == round(p * 2**32)
    m = _philox.mask(key, 200, 64, 100)  # 1.28e6 draws: sd of the rate 2.7e-4
    assert abs(m.mean() - p) < 0.002
    for axis in range(3):  # neighbours in time, batch and features are uncorrelated
        a, b = np.moveaxis(m, axis, 0)[:-1].ravel(), np.moveaxis(m, axis, 0)[1:].ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    other = _philox.mask(draw_zoneout_key(p).numpy(), 200, 64, 100)
    assert abs(np.corrcoef(m.ravel(), other.ravel())[0, 1]) < 0.01  # keys give unrelated masks


def test_keys_come_from_torchs_generator():
    torch.manual_seed(3)
    a = draw_zoneout_key(0.2)
    torch.manual_seed(3)
    assert torch.equal(a, draw_zoneout_key(0.2))
    assert not torch.equal(a, draw_zoneout_key(0.2))


def test_options_materialise_the_keys_mask_for_explicit_mask_backends():
    key = torch.tensor([1, 2, round(0.3 * 2**32)])
    like = torch.zeros(0, dtype=torch.float32)
    got = LayerOptions(zoneout=0.3, zoneout_key=key).resolved_zoneout_mask(4, 2, 5, like)
    assert got.dtype == torch.float32 and got.shape == (4, 2, 5)
    np.testing.assert_array_equal(got.numpy(), _python_mask(key, 4, 2, 5))
    assert LayerOptions(zoneout=0.3).resolved_zoneout_mask(4, 2, 5, like) is None


def test_a_training_run_is_the_same_on_every_thread_split(monkeypatch):
    """The mask depends on (t, b, j) only, so the fused kernels' thread splits give one result."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # a split needs threads
    results = []
    for split in ("none", "rows", "features"):
        monkeypatch.setenv("GRUKIT_CPU_SPLIT", split)
        torch.manual_seed(0)
        gru = grukit.GRU(3, 24, zoneout=0.3, dtype=torch.float64, backend="cpu").train()
        x = torch.randn(7, 4, 3, dtype=torch.float64)
        torch.manual_seed(1)
        out, _ = gru(x)
        out.square().sum().backward()
        results.append([out, *(p.grad for p in gru.parameters())])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
