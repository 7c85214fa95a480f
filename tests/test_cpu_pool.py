"""The cpu backend's reused workspace memory (``grukit.backends._cpu_pool``)."""

from __future__ import annotations

import gc

import pytest
import torch

import grukit
from grukit.backends import _cpu_pool, _cpu_variants


@pytest.fixture
def small_pool(monkeypatch):
    """Every array goes through the pool (it normally takes only those over 32 MiB)."""
    monkeypatch.setattr(_cpu_pool, "MIN_BYTES", 0)
    _cpu_pool.release()
    yield
    _cpu_pool.release()


def test_a_block_comes_back_when_its_tensor_and_views_are_gone(small_pool):
    a = _cpu_pool.empty((4, 5), torch.float32)
    assert a.shape == (4, 5) and a.dtype == torch.float32 and a.is_contiguous()
    ptr = a.data_ptr()
    view = a.view(20)[3:]
    del a
    gc.collect()
    assert _cpu_pool.free_bytes() == 0  # the view still holds it
    del view
    gc.collect()
    assert _cpu_pool.free_bytes() == 80
    b = _cpu_pool.empty((2, 10), torch.float32)  # the same size: the same block
    assert b.data_ptr() == ptr and _cpu_pool.free_bytes() == 0
    c = _cpu_pool.empty((2, 10), torch.float32)  # the block is leased: a new one
    assert c.data_ptr() != ptr
    b.fill_(1.0), c.fill_(2.0)
    assert b.sum().item() == 20 and c.sum().item() == 40  # no overlap


def test_sizes_match_within_a_factor_of_two_and_float64_works(small_pool):
    a = _cpu_pool.empty((100,), torch.float64)  # 800 bytes
    ptr = a.data_ptr()
    del a
    assert _cpu_pool.empty((30,), torch.float64).data_ptr() != ptr  # 240 bytes: too small for it
    d = _cpu_pool.empty((60,), torch.float64)  # 480 bytes: fits
    assert d.data_ptr() == ptr and d.dtype == torch.float64


def test_free_blocks_are_capped_and_released(small_pool, monkeypatch):
    monkeypatch.setattr(_cpu_pool, "KEEP_BYTES", 1000)
    blocks = [_cpu_pool.empty((n,), torch.float32) for n in (100, 150, 200)]  # 400, 600, 800 B
    del blocks
    assert _cpu_pool.free_bytes() == 800  # the largest kept, the smaller dropped over the cap
    _cpu_pool.release()
    assert _cpu_pool.free_bytes() == 0


def test_off_switch_and_small_arrays_get_fresh_tensors(monkeypatch):
    _cpu_pool.release()
    a = _cpu_pool.empty((10,), torch.float32)  # under MIN_BYTES
    del a
    assert _cpu_pool.free_bytes() == 0
    monkeypatch.setattr(_cpu_pool, "MIN_BYTES", 0)
    monkeypatch.setenv("GRUKIT_CPU_POOL", "0")
    a = _cpu_pool.empty((10,), torch.float32)
    del a
    assert _cpu_pool.free_bytes() == 0


@pytest.mark.parametrize(
    "options",
    [{}, {"layer_norm": True, "zoneout": 0.2}, {"zoneout": 0.2}, {"layer_norm": True, "bias": False}],
)
def test_training_through_pooled_workspaces_matches_the_reference(small_pool, options, monkeypatch):
    """Two training steps through pooled workspaces (the second reusing the first's blocks; with
    a variant also the pooled input side, ``_cpu_variants._PooledInputSide``, whose second layer
    computes the input's gradient) give the reference's outputs and gradients."""
    calls = []
    real = _cpu_variants._PooledInputSide.apply
    monkeypatch.setattr(_cpu_variants._PooledInputSide, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    gru = grukit.GRU(3, 6, 2, bidirectional=True, dtype=torch.float64, backend="cpu", **options)
    ref = grukit.GRU(3, 6, 2, bidirectional=True, dtype=torch.float64, backend="reference", **options)
    ref.load_state_dict(gru.state_dict())
    for step in range(2):
        x = torch.randn(7, 4, 3, dtype=torch.float64)
        results = []
        for m in (gru, ref):
            m.zero_grad()
            torch.manual_seed(step)
            out, h_n = m(x)
            (out.square().sum() + h_n.sum()).backward()
            results.append([out, h_n, *(p.grad for p in m.parameters())])
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
        gc.collect()
        assert _cpu_pool.free_bytes() > 0  # the workspaces came back
    assert len(calls) == (8 if options else 0)  # 2 steps x 2 layers x 2 directions
