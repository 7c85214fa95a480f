"""Short inference calls of ``grukit.GRU`` (``backend="auto"``, T * N at most
``FAST_MAX_STEPS_ROWS``, nothing needing a gradient) run through the streaming kernel: the same
numbers as the reference backend for every option that path takes, the fused path wherever it
does not apply, and no state shared between calls, threads or copies of a module."""

import copy
import itertools
import threading

import pytest
import torch
from torch import nn

import grukit
import grukit.inspect
from grukit import streaming


@pytest.fixture
def taken(monkeypatch):
    """A list that records, per short-call attempt, whether the streaming kernel ran it."""
    seen = []
    real = streaming.short_call

    def spy(*args):
        result = real(*args)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(streaming, "short_call", spy)
    return seen


def _reference_twin(gru):
    twin = copy.deepcopy(gru)
    twin.backend = "reference"  # the Python loop of the spec's equations: an independent oracle
    return twin


CASES = list(
    itertools.product(
        [1, 2],  # layers
        [True, False],  # reset_after
        [True, False],  # bias
        ["batched", "batch_first", "unbatched"],
        [False, True],  # hx given
    )
)


@pytest.mark.parametrize("layers, reset_after, bias, layout, with_hx", CASES)
def test_short_calls_equal_the_reference(taken, layers, reset_after, bias, layout, with_hx):
    torch.manual_seed(layers * 7 + reset_after * 3 + bias)
    gru = grukit.GRU(
        3,
        5,
        layers,
        bias=bias,
        reset_after=reset_after,
        batch_first=layout == "batch_first",
        dropout=0.3 if layers == 2 else 0.0,
        zoneout=0.2,
    ).eval()  # evaluation: dropout off, zoneout its interpolation
    T, N = 4, 2
    x = {
        "batched": torch.randn(T, N, 3),
        "batch_first": torch.randn(N, T, 3),
        "unbatched": torch.randn(T, 3),
    }[layout]
    hx = None
    if with_hx:
        hx = torch.randn(layers, 5) if layout == "unbatched" else torch.randn(layers, N, 5)
    with torch.no_grad():
        y, h_n = gru(x, hx)
        y_ref, h_ref = _reference_twin(gru)(x, hx)
    assert taken == [True] and gru.backend_used == "cpu"
    assert y.shape == y_ref.shape and h_n.shape == h_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, h_ref, rtol=1e-5, atol=1e-6)


def test_float64_and_inference_mode(taken):
    gru = grukit.GRU(4, 6, 2, dtype=torch.float64)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    with torch.inference_mode():
        y, h_n = gru(x)
        y_ref, h_ref = _reference_twin(gru)(x)
    assert taken == [True]
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, h_ref, rtol=1e-12, atol=1e-12)


def _attempted(gru, x, seen, **kwargs):
    """Whether the call ran through the streaming kernel."""
    before = len(seen)
    gru(x, **kwargs)
    return seen[before:] == [True]


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda: grukit.GRU(3, 4, bidirectional=True), "bidirectional"),
        (lambda: grukit.GRU(3, 4, layer_norm=True), "layer norm"),
        (lambda: grukit.GRU(3, 4, backend="cpu"), "the fused kernels named"),
        (lambda: grukit.GRU(3, 4, backend="reference"), "another backend named"),
        (lambda: grukit.GRU(3, 4, 2, dropout=0.5).train(), "dropout in training"),
        (lambda: grukit.GRU(3, 4, zoneout=0.1).train(), "zoneout in training"),
        (lambda: grukit.GRU(3, 4, recurrent_dropout=0.1).train(), "recurrent dropout in training"),
        (lambda: grukit.GRU(3, 4, weight_dropout=0.1).train(), "weight dropout in training"),
    ],
)
def test_options_the_short_path_does_not_take(taken, make, why):
    gru = make()
    with torch.no_grad():
        gru(torch.randn(2, 1, 3))
    assert True not in taken, why


def test_contexts_that_keep_the_fused_path(taken):
    gru = grukit.GRU(3, 4)
    x = torch.randn(2, 1, 3)
    assert not _attempted(gru, x, taken)  # a gradient is needed: the fused op saves for backward
    with torch.no_grad():
        assert _attempted(gru, x, taken)
        assert not _attempted(gru, torch.randn(257, 1, 3), taken)  # T * N over the bound
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _attempted(gru, x, taken)
        with torch.autograd.forward_ad.dual_level():
            assert not _attempted(gru, x, taken)
        packed = nn.utils.rnn.pack_padded_sequence(torch.randn(2, 2, 3), [2, 1])
        assert not _attempted(gru, packed, taken)
    n = len(taken)
    trace = grukit.inspect.gates(gru, x)  # gate recording runs the backend's gates function
    assert trace.z.shape[-1] == 4 and True not in taken[n:]


def test_func_transforms_keep_the_fused_path(taken):
    gru = grukit.GRU(3, 4)
    params = dict(gru.named_parameters())
    x = torch.randn(2, 1, 3)
    with torch.no_grad():
        out = torch.func.vmap(lambda xi: torch.func.functional_call(gru, params, (xi,))[0])(
            x.unsqueeze(0).expand(2, -1, -1, -1)
        )
    assert out.shape == (2, 2, 1, 4) and True not in taken


def test_no_state_leaks_from_one_call_to_the_next(taken):
    gru = grukit.GRU(3, 4, 2)
    x = torch.randn(3, 2, 3)
    with torch.no_grad():
        fresh, _ = gru(x)
        gru(x, torch.randn(2, 2, 4))  # a call from another state
        again, _ = gru(x)  # from zeros again
        other_batch, _ = gru(torch.randn(3, 5, 3))  # another batch size in between
        last, _ = gru(x)
    assert taken == [True] * 5
    assert torch.equal(fresh, again) and torch.equal(fresh, last)
    assert other_batch.shape == (3, 5, 4)


def test_parameters_changed_in_place_or_replaced_are_seen(taken):
    gru = grukit.GRU(3, 4)
    x = torch.randn(2, 1, 3)
    with torch.no_grad():
        gru(x)
        gru.weight_hh_l0.mul_(0.5)  # in place, as an optimizer step does
        y, _ = gru(x)
        torch.testing.assert_close(y, _reference_twin(gru)(x)[0], rtol=1e-5, atol=1e-6)
        gru.weight_ih_l0 = nn.Parameter(torch.randn(12, 3))  # replaced
        y, _ = gru(x)
        torch.testing.assert_close(y, _reference_twin(gru)(x)[0], rtol=1e-5, atol=1e-6)
    assert taken == [True] * 3


def test_a_copy_has_its_own_stream(taken):
    gru = grukit.GRU(3, 4)
    x = torch.randn(2, 1, 3)
    with torch.no_grad():
        before, _ = gru(x)
        twin = copy.deepcopy(gru)
        twin.weight_hh_l0.zero_()
        twin(x)
        after, _ = gru(x)
    assert torch.equal(before, after)


def test_concurrent_calls_from_threads_share_no_state():
    torch.manual_seed(0)
    gru = grukit.GRU(8, 16, 2)
    inputs = [torch.randn(4, 2, 8) for _ in range(4)]
    hx = [torch.randn(2, 2, 16) for _ in range(4)]
    with torch.no_grad():
        expected = [gru(x, h) for x, h in zip(inputs, hx)]
    got = [None] * 4
    errors = []

    def work(i):
        try:
            with torch.no_grad():
                for _ in range(200):
                    y, h_n = gru(inputs[i], hx[i])
                    if not (torch.equal(y, expected[i][0]) and torch.equal(h_n, expected[i][1])):
                        got[i] = "different"
                        return
            got[i] = "same"
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == ["same"] * 4


def test_thread_count_change_between_calls(taken):
    gru = grukit.GRU(64, 256)  # large enough for the split over threads
    x = torch.randn(2, 1, 64)
    previous = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            one, _ = gru(x)
            torch.set_num_threads(2)
            two, _ = gru(x)
    finally:
        torch.set_num_threads(previous)
    assert taken == [True, True]
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-6)
