"""The language model's sampler (grukit.apps.text.sampling): the compiled steps against the network
run one token at a time, the sampling rule against sets and draws computed here, determinism,
argument checks, and the generation benchmark's mode at a tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grukit.apps.text import sampling
from grukit.apps.text.model import LMConfig, LMNet
from grukit.apps.text.sampling import Sampler, check_sampling, sample_reference
from grukit.train.config import ConfigError

compiled = pytest.mark.skipif(sampling._kernel() is None, reason="Numba/BLAS kernels unavailable")


def _net(seed=0, V=13, dtype=torch.float64, **cfg) -> LMNet:
    """A small LMNet with every parameter random (layer-norm gains and shifts, the head bias)."""
    torch.manual_seed(seed)
    net = LMNet(LMConfig(**{"hidden_size": 8, **cfg}), V).to(dtype).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "layer_norm" in name or name == "head.bias":
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p) * 0.3)
        net.embedding.weight.mul_(10)  # livelier logits than the 0.1 initialisation
    return net


@torch.no_grad()
def _oracle(net, h, tokens, u, **rule):
    """The network's own forward a token at a time, and sample_reference: ids (S, N), state."""
    x = torch.as_tensor(tokens)  # (N,)
    out = []
    for s in range(u.shape[0]):
        logits, h = net(x[:, None], h)  # (N, 1, V), (L, N, H)
        x = torch.from_numpy(sample_reference(logits[:, 0].numpy(), u[s], **rule))
        out.append(x.numpy())
    return np.stack(out), h


CASES = [  # num_layers, embedding_size (tied with E != H: proj), tie_weights, rows, zoneout
    dict(num_layers=1, embedding_size=5, tie_weights=True, rows=1, zoneout=0.0),
    dict(num_layers=2, embedding_size=5, tie_weights=True, rows=3, zoneout=0.3),
    dict(num_layers=2, embedding_size=6, tie_weights=False, rows=1, zoneout=0.0),
    dict(num_layers=1, embedding_size=0, tie_weights=True, rows=3, zoneout=0.2),
]


@compiled
@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: "L{num_layers}E{embedding_size}t{tie_weights:d}N{rows}z{zoneout}".format(**c)
)
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("reset_after", [False, True])
def test_compiled_ids_equal_step_by_step_network(case, layer_norm, reset_after):
    case = dict(case)
    N = case.pop("rows")
    net = _net(reset_after=reset_after, layer_norm=layer_norm, **case)
    assert (net.proj is not None) == (case["tie_weights"] and case["embedding_size"] not in (0, 8))
    rule = dict(temperature=0.9, top_k=0 if layer_norm else 6, top_p=0.85 if reset_after else 1.0)
    rng = np.random.default_rng(1)
    h0 = torch.randn(case["num_layers"], N, 8, dtype=torch.float64)
    first = rng.integers(0, 13, N)
    u = rng.random((25, N))
    sampler = Sampler(net, rows=N, **rule)
    assert sampler.path == "compiled"
    sampler.state = h0
    ids = sampler.run(first, 25, u)
    want, h = _oracle(net, h0, first, u, **rule)
    np.testing.assert_array_equal(ids, want)
    assert len(np.unique(ids)) > 2  # the draws are not trivially constant
    torch.testing.assert_close(sampler.state, h, rtol=0, atol=1e-12)


@compiled
def test_compiled_equals_torch_fallback():
    net = _net(num_layers=2, embedding_size=5, layer_norm=True, zoneout=0.1)
    u = np.random.default_rng(2).random((30, 2))
    fast, slow = (Sampler(net, rows=2, temperature=1.3, top_k=4, fast=f) for f in (True, False))
    assert (fast.path, slow.path) == ("compiled", "torch")
    np.testing.assert_array_equal(fast.run([0, 1], 30, u), slow.run([0, 1], 30, u))
    torch.testing.assert_close(fast.state, slow.state, rtol=0, atol=1e-12)


def test_fallback_where_kernels_unavailable(monkeypatch):
    monkeypatch.setattr(sampling, "_kernel", lambda: None)
    net = _net()
    s = Sampler(net, rows=2, temperature=0.0)
    assert s.path == "torch"
    u = np.zeros((5, 2))
    want, h = _oracle(net, None, [3, 4], u, temperature=0.0)
    np.testing.assert_array_equal(s.run(np.array([3, 4]), 5, u), want)
    torch.testing.assert_close(s.state, h)


@compiled
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("packed", ["packed", "plain"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_float32_state_close_to_network(reset_after, packed, layer_norm, monkeypatch):
    """Float32 sampling, its products through MKL's packed GEMM (weights packed once per
    sampler) or not (``GRUKIT_CPU_PACKED=0``), against the network's own forward pass."""
    from grukit.backends import _blas, _cpu_base

    if packed == "plain":
        monkeypatch.setenv(_cpu_base.PACKED_ENV, "0")
    elif not _blas.has_packed_gemm():
        pytest.skip("no MKL packed GEMM in PyTorch's library")
    net = _net(
        dtype=torch.float32,
        hidden_size=32,
        num_layers=2,
        embedding_size=16,
        reset_after=reset_after,
        layer_norm=layer_norm,
        zoneout=0.1,
    )
    s = Sampler(net, rows=3)
    assert (s._weights[-1].shape[2] > 0) == (packed == "packed")  # the kernel's packed weights
    first = np.array([1, 5, 7])
    ids = s.run(first, 6, np.random.default_rng(3).random((6, 3)))  # (6, 3)
    x = torch.from_numpy(np.concatenate([first[None], ids[:-1]]).T.copy())  # (3, 6) inputs read
    with torch.no_grad():
        _, h = net(x)  # (L, 3, H)
    torch.testing.assert_close(s.state, h, rtol=0, atol=2e-5)


def test_same_seed_same_ids_whatever_the_blocks():
    net = _net(num_layers=2)

    def generate(blocks):
        rng, s, tok, out = np.random.default_rng(7), Sampler(net, rows=2, top_k=5), [1, 2], []
        for steps in blocks:
            out.append(s.run(tok, steps, rng.random((steps, 2))))  # (steps, 2), step-major draws
            tok = out[-1][-1] if steps else tok
        return np.concatenate(out)

    whole = generate([24])
    for blocks in ([1] * 24, [5, 0, 7, 12], [3, 21]):
        np.testing.assert_array_equal(generate(blocks), whole)


# -- the sampling rule ---------------------------------------------------------------------------


def _allowed(l, T, k, p):
    """The set the rule may draw from and its renormalised probabilities, straight from the
    definitions (sorting by hand, probabilities normalised first)."""
    V = len(l)
    ranked = sorted(range(V), key=lambda i: (-l[i], i))
    if 0 < k < V:
        ranked = ranked[:k]
    q = np.exp((l - l.max()) / T)
    q = q / q.sum()
    if p < 1:
        mass = q[ranked].sum()
        acc, cut = 0.0, len(ranked)
        for m, i in enumerate(ranked):
            acc += q[i]
            if acc >= p * mass * (1 - 1e-12):
                cut = m + 1
                break
        ranked = ranked[:cut]
    keep = sorted(ranked)
    probs = q[keep] / q[keep].sum()
    return keep, probs


def _random_logits(rng, V):
    if rng.random() < 0.3:
        return rng.integers(-2, 3, V).astype(float)  # many ties
    return rng.normal(0, 3, V)


def test_draw_lies_in_allowed_set_and_inverts_the_cdf():
    rng = np.random.default_rng(0)
    for _ in range(400):
        V = int(rng.integers(1, 40))
        l = _random_logits(rng, V)
        T, k = float(rng.choice([0.5, 1.0, 2.0])), int(rng.integers(0, V + 2))
        p = float(rng.choice([0.3, 0.9, 1.0]))
        keep, probs = _allowed(l, T, k, p)
        u = rng.random(8)
        got = sample_reference(np.tile(l, (8, 1)), u, T, k, p)
        assert set(got) <= set(keep)
        cdf = np.cumsum(probs)
        want = [keep[min(int(np.searchsorted(cdf, x, side="right")), len(keep) - 1)] for x in u]
        np.testing.assert_array_equal(got, want)


def test_top_k_one_and_temperature_zero_are_argmax():
    rng = np.random.default_rng(1)
    l = rng.integers(0, 4, (50, 9)).astype(float)  # ties: the lowest id wins
    u = rng.random(50)
    want = np.array([min(np.flatnonzero(r == r.max())) for r in l])
    np.testing.assert_array_equal(sample_reference(l, u, temperature=0.0), want)
    np.testing.assert_array_equal(sample_reference(l, u, temperature=1.0, top_k=1), want)
    np.testing.assert_array_equal(sample_reference(l, u, temperature=1.0, top_p=1e-9), want)


@compiled
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_rule_equals_reference(dtype):
    from grukit.apps.text._sampler_kernel import sample_row

    rng = np.random.default_rng(2)
    for _ in range(300):
        V = int(rng.integers(1, 60))
        l = _random_logits(rng, V).astype(dtype)
        T = float(rng.choice([0.0, 0.7, 1.0, 3.0]))
        k, p = int(rng.integers(0, V + 2)), float(rng.choice([0.2, 0.95, 1.0]))
        u = rng.random(5)
        want = sample_reference(np.tile(l, (5, 1)), u, T, k, p)
        order, w = np.empty(V, np.int64), np.empty(V)
        got = [sample_row(l, x, T, k, p, order, w) for x in u]
        np.testing.assert_array_equal(got, want)


@compiled
def test_compiled_greedy_is_argmax_of_network():
    net = _net(num_layers=2, embedding_size=4)
    s = Sampler(net, rows=1, temperature=0)
    ids = s.run([0], 10, np.full((10, 1), 0.99))
    want, _ = _oracle(net, None, [0], np.zeros((10, 1)), temperature=0.0)
    np.testing.assert_array_equal(ids, want)


# -- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        dict(temperature=-0.1),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(temperature=True),
        dict(top_k=-1),
        dict(top_k=1.5),
        dict(top_k=True),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_p=float("nan")),
    ],
)
def test_bad_rule_raises(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        check_sampling(**bad)
    with pytest.raises(ConfigError):
        Sampler(_net(), **bad)


def test_bad_run_arguments_raise():
    net = _net()
    s = Sampler(net, rows=2)
    u = np.full((3, 2), 0.5)
    for tokens, steps, uniforms, match in [
        ([0], 3, u, "first_tokens"),
        ([0.0, 1.0], 3, u, "first_tokens"),
        ([0, 13], 3, u, "token ids"),
        ([0, 1], -1, u, "steps"),
        ([0, 1], 2, u, "uniforms"),
        ([0, 1], 3, u + 0.5, r"\[0, 1\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            s.run(tokens, steps, uniforms)
    with pytest.raises(ValueError, match="state"):
        s.state = torch.zeros(1, 3, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="eval mode"):
        Sampler(net.train())
    with pytest.raises(ValueError, match="float32 or float64"):
        Sampler(_net(dtype=torch.bfloat16))


# -- the generation benchmark ---------------------------------------------------------------------


def test_generate_bench_writes_its_table_and_record(tmp_path, monkeypatch, capsys):
    from grukit.bench import generate
    from grukit.cli.main import main

    tiny = (generate.GenCase("tiny", V=11, H=8, L=2),)
    monkeypatch.setattr(generate, "CASES", tiny)
    monkeypatch.setattr(generate, "TOKENS", 20)
    assert main(["bench", "--generate", "--rounds", "2", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "generate.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| model"))
    providers = {f"{kind}-{k}t" for kind in ("grukit", "torch", "floor") for k in (1, 2)}
    for name in (*providers, "grukit / best torch"):
        assert name in header
    assert any(line.startswith("| tiny (11, 8, 2) |") for line in md)
    data = json.loads((tmp_path / "generate.json").read_text())
    assert data["config"]["rounds"] == 2 and data["config"]["tokens"] == 20
    assert {r["provider"] for r in data["results"]} == providers
    assert all(len(r["times_s"]) == 2 and r["chars_per_s"] > 0 for r in data["results"])
    env = data["environment"]
    assert env["cpu"] and env["versions"]["torch"] and "vector_extensions" in env
    assert "grukit-1t" in capsys.readouterr().out
