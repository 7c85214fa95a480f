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
    """A list that records, per short-call attempt, whether the streaming kernel ran it (through
    ``short_call``, or through the lane that repeats a call like the last short one)."""
    seen = []
    real = streaming.short_call

    def spy(*args):
        result = real(*args)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(streaming, "short_call", spy)
    real_lane = streaming.CallLane.run

    def spy_lane(self, *args):  # a call like the last short one skips short_call: count it
        result = real_lane(self, *args)
        if result is not None:
            seen.append(True)
        return result

    monkeypatch.setattr(streaming.CallLane, "run", spy_lane)
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


# -- the lane: a call like the last short one skips the forward's validation ---------------------


def _lane_runs(monkeypatch):
    """A list of the lane's outcomes, call by call: True where it ran the call, False where it
    returned None (the full forward then ran)."""
    seen = []
    real = streaming.CallLane.run

    def spy(self, *args):
        result = real(self, *args)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(streaming.CallLane, "run", spy)
    return seen


LAYOUTS = [
    ("batched, hx", lambda: (torch.randn(1, 1, 3), torch.randn(2, 1, 5)), {}),
    ("batched, no hx", lambda: (torch.randn(1, 2, 3), None), {}),
    ("unbatched, hx", lambda: (torch.randn(2, 3), torch.randn(2, 5)), {}),
    ("unbatched, no hx", lambda: (torch.randn(1, 3), None), {}),
    ("batch_first, one row", lambda: (torch.randn(1, 4, 3), torch.randn(2, 1, 5)), {"batch_first": True}),
    ("batch_first, one step", lambda: (torch.randn(3, 1, 3), None), {"batch_first": True}),
]


@pytest.mark.parametrize("name, make, kw", LAYOUTS, ids=[c[0] for c in LAYOUTS])
@pytest.mark.parametrize("reset_after", [True, False])
def test_repeated_calls_take_the_lane_and_equal_the_reference(monkeypatch, name, make, kw, reset_after):
    torch.manual_seed(3)
    gru = grukit.GRU(3, 5, 2, reset_after=reset_after, zoneout=0.25, **kw).eval()
    twin = _reference_twin(gru)
    runs = _lane_runs(monkeypatch)
    with torch.no_grad():
        for _ in range(4):  # new values each call, the same form: the lane from the second on
            x, hx = make()
            y, h_n = gru(x, hx)
            y_ref, h_ref = twin(x, hx)
            assert y.shape == y_ref.shape and h_n.shape == h_ref.shape
            torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(h_n, h_ref, rtol=1e-5, atol=1e-6)
    assert runs == [True] * 3
    y2, h2 = gru(x, hx)  # outputs are fresh tensors, not views of the lane's memory
    assert not torch.equal(y2, torch.zeros_like(y2)) and y2.data_ptr() != y.data_ptr()
    assert h2.data_ptr() != h_n.data_ptr()


def test_what_a_lane_does_not_take_runs_the_full_forward(monkeypatch):
    torch.manual_seed(4)
    gru = grukit.GRU(3, 5, zoneout=0.3).eval()
    x, hx = torch.randn(1, 1, 3), torch.randn(1, 1, 5)
    runs = _lane_runs(monkeypatch)

    def check(y, x, hx):
        torch.testing.assert_close(y, _reference_twin(gru)(x, hx)[0], rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        gru(x, hx)  # builds the lane
        gru.weight_hh_l0.mul_(0.5)  # in place: the lane reads the parameters' own memory
        y, _ = gru(x, hx)
        check(y, x, hx)
        assert runs == [True]
        gru.weight_hh_l0 = nn.Parameter(torch.randn(15, 5))  # replaced: the full forward
        check(gru(x, hx)[0], x, hx)
        gru.bias_ih_l0.data = torch.randn(15)  # storage swapped through .data
        check(gru(x, hx)[0], x, hx)
        assert runs == [True, False, False]
        check(gru(x, hx.clone())[0], x, hx)  # another tensor of the same form: the lane again
        hx_strided = torch.randn(1, 1, 10)[..., ::2]  # not contiguous: the full forward
        check(gru(x, hx_strided)[0], x, hx_strided)
        x2 = torch.randn(2, 1, 3)  # another shape
        check(gru(x2, None)[0], x2, None)
        assert runs[3:] == [True, False]  # (after a call no lane can take, none is kept)
        gru.train()  # zoneout draws masks in training: never the lane
        gru(x2)
        torch.manual_seed(0)
        a, _ = gru(x2)
        torch.manual_seed(1)
        b, _ = gru(x2)
        assert not torch.equal(a, b)
        gru.eval()
    with torch.no_grad():
        gru(x2)
        gru.batch_first = True  # the same tensor now means (N=2, T=1): the full forward
        y, _ = gru(x2)
        assert y.shape == (2, 1, 5)
        gru.batch_first = False
        # a wrong input after the lane was built gets the forward's own error
        with pytest.raises(ValueError, match="dtype"):
            gru(x2.double())
        with pytest.raises(ValueError, match="hidden size"):
            gru(x2, torch.randn(1, 3, 5))
    y, _ = gru(x2)  # gradients enabled: the fused op, which autograd records
    assert y.grad_fn is not None


def test_a_lane_survives_no_copy_and_a_parametrization(monkeypatch):
    from torch.nn.utils import parametrize

    gru = grukit.GRU(3, 4).eval()
    x = torch.randn(3, 2, 3)  # three steps: W_hh matters from the second
    with torch.no_grad():
        before, _ = gru(x)
        gru(x)
        twin = copy.deepcopy(gru)  # the lane is not the module's: the copy builds its own
        with torch.no_grad():
            twin.weight_hh_l0.zero_()
        assert not torch.equal(twin(x)[0], before) and torch.equal(gru(x)[0], before)

        class Double(nn.Module):
            def forward(self, w):
                return 2 * w

        parametrize.register_parametrization(gru, "weight_hh_l0", Double())
        y, _ = gru(x)  # the weight is computed now: the full forward, with the doubled weight
        assert not torch.allclose(y, before)
        plain = grukit.GRU(3, 4).eval()
        plain.load_state_dict(
            {
                k.replace("parametrizations.", "").replace(".original", ""): v
                for k, v in gru.state_dict().items()
            }
        )
        with torch.no_grad():
            plain.weight_hh_l0.mul_(2)
        torch.testing.assert_close(y, plain(x)[0], rtol=1e-5, atol=1e-6)
