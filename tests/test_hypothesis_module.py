"""Property-based tests of the module API (hypothesis): whatever ``torch.nn.GRU`` accepts,
``grukit.GRU`` accepts and agrees with; whatever it rejects, grukit rejects with an error that
names the argument; options torch lacks agree with grukit's ``reference`` backend.

The default profile (tests/conftest.py) runs a few derandomized examples of each; ``make fuzz``
runs many (``HYPOTHESIS_PROFILE=fuzz``). Shapes: T steps, N batch, I input, H hidden, L layers,
D directions.
"""

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import grukit

from conftest import tols

F32, F64 = torch.float32, torch.float64
BACKENDS = ["auto", "cpu", "reference", "torch"]  # torch: PyTorch's kernel, reset_after=True only
FLOAT = st.sampled_from([F32, F64])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """GRUs this small run fastest on one thread, which also spares them OpenMP's waits for cores
    that other processes keep busy (a 2,000-step float64 torch.nn.GRU took 7.7 s on 2 busy cores,
    0.12 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def configs(draw, *, variants: bool = False):
    """Constructor arguments of a small GRU (``variants``: with grukit's options too)."""
    cfg = dict(
        input_size=draw(st.integers(1, 5)),
        hidden_size=draw(st.integers(1, 6)),
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
    )
    if variants:
        p = st.sampled_from([0.0, 0.1, 0.5])
        cfg.update(
            dropout=draw(p) if cfg["num_layers"] > 1 else 0.0,
            layer_norm=draw(st.booleans()),
            zoneout=draw(p),
            recurrent_dropout=draw(p),
            weight_dropout=draw(p),
        )
    return cfg


@st.composite
def inputs(draw, cfg: dict, dtype: torch.dtype):
    """``(input, hx)`` for ``cfg``: batched (T, N, I) or batch-first, unbatched (T, I), or a
    PackedSequence of random lengths (sorted or not); ``hx`` given or None."""
    I, H = cfg["input_size"], cfg["hidden_size"]
    DL = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    form = draw(st.sampled_from(["batched", "unbatched", "packed"]))
    T = draw(st.integers(1, 7))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if form == "unbatched":
        x = torch.randn(T, I, generator=g, dtype=F64).to(dtype)  # (T, I)
        hx_shape = (DL, H)
    else:
        N = draw(st.integers(1, 4))
        x = torch.randn(T, N, I, generator=g, dtype=F64).to(dtype)  # (T, N, I)
        hx_shape = (DL, N, H)
        if form == "packed":
            lengths = draw(st.lists(st.integers(1, T), min_size=N, max_size=N))
            lengths[draw(st.integers(0, N - 1))] = T  # the longest sets T, as pack_* requires
            enforce_sorted = draw(st.booleans())
            if enforce_sorted:
                lengths = sorted(lengths, reverse=True)
            x = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=enforce_sorted)
        elif cfg["batch_first"]:
            x = x.transpose(0, 1).contiguous()  # (N, T, I)
    hx = torch.randn(hx_shape, generator=g, dtype=F64).to(dtype) if draw(st.booleans()) else None
    return x, hx


def _close(got, want, dtype) -> None:
    """Outputs (tensors or PackedSequences) agree to ``dtype``'s tolerance, and nothing is NaN."""
    if isinstance(want, PackedSequence):
        assert isinstance(got, PackedSequence)
        assert torch.equal(got.batch_sizes, want.batch_sizes)
        got, want = got.data, want.data
    assert got.shape == want.shape and got.dtype == want.dtype
    assert not got.isnan().any()
    torch.testing.assert_close(got, want, **tols(dtype))


@given(cfg=configs(), dtype=FLOAT, backend=st.sampled_from(BACKENDS), data=st.data())
def test_accepts_what_torch_accepts_and_agrees(cfg, dtype, backend, data):
    torch.manual_seed(0)
    theirs = torch.nn.GRU(**cfg, dtype=dtype)
    ours = grukit.GRU(**cfg, dtype=dtype, reset_after=True, backend=backend)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x, hx = data.draw(inputs(cfg, dtype))
    with torch.no_grad():
        want_y, want_h = theirs(x, hx)
        got_y, got_h = ours(x, hx)
    _close(got_y, want_y, dtype)
    _close(got_h, want_h, dtype)


@given(
    cfg=configs(variants=True),
    dtype=FLOAT,
    reset_after=st.booleans(),
    backend=st.sampled_from(["auto", "cpu"]),
    data=st.data(),
)
def test_variants_in_eval_agree_with_the_reference_backend(cfg, dtype, reset_after, backend, data):
    """Every option in evaluation mode, both formulations, batched, unbatched and packed input:
    the fast backends compute what ``reference`` (``grukit.functional``) computes."""
    torch.manual_seed(0)
    ours = grukit.GRU(**cfg, dtype=dtype, reset_after=reset_after, backend=backend).eval()
    ref = grukit.GRU(**cfg, dtype=dtype, reset_after=reset_after, backend="reference").eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    if cfg["layer_norm"]:  # gains and shifts away from their initial 1 and 0
        with torch.no_grad():
            for name in ours._layer_norm_names:
                getattr(ours, name).uniform_(0.5, 1.5)
        ref.load_state_dict(ours.state_dict(), strict=True)
    x, hx = data.draw(inputs(cfg, dtype))
    with torch.no_grad():
        want_y, want_h = ref(x, hx)
        got_y, got_h = ours(x, hx)
        again_y, again_h = ours(x, hx)
    _close(got_y, want_y, dtype)
    _close(got_h, want_h, dtype)
    # evaluation is deterministic: the same call gives the same numbers, bit for bit
    y1, y2 = (again_y.data, got_y.data) if isinstance(got_y, PackedSequence) else (again_y, got_y)
    assert torch.equal(y1, y2) and torch.equal(again_h, got_h)


@given(cfg=configs(variants=True), dtype=FLOAT, reset_after=st.booleans(), data=st.data())
def test_dropouts_are_the_identity_in_eval(cfg, dtype, reset_after, data):
    """In evaluation, dropout, recurrent and weight dropout of any p equal the GRU with p = 0
    (zoneout and layer norm are not no-ops in evaluation, so they stay as drawn)."""
    torch.manual_seed(0)
    ours = grukit.GRU(**cfg, dtype=dtype, reset_after=reset_after).eval()
    plain = grukit.GRU(
        **(cfg | dict(dropout=0.0, recurrent_dropout=0.0, weight_dropout=0.0)),
        dtype=dtype,
        reset_after=reset_after,
    ).eval()
    plain.load_state_dict(ours.state_dict(), strict=True)
    x, hx = data.draw(inputs(cfg, dtype))
    with torch.no_grad():
        got, want = ours(x, hx), plain(x, hx)
    _close(got[0], want[0], dtype)
    _close(got[1], want[1], dtype)


# -- what torch rejects -------------------------------------------------------------------------

# Words one of which the message of each kind of mistake must contain (the argument it is about).
_NAMES = {
    "dims": ("input",),
    "features": ("input",),
    "hx_dims": ("hx", "hidden"),
    "hx_shape": ("hx", "hidden"),
    "dtype": ("dtype",),
    "hx_dtype": ("dtype",),
    "empty": ("sequence length", "input"),
}


@given(cfg=configs(), pdtype=FLOAT, mistake=st.sampled_from(sorted(_NAMES)), data=st.data())
def test_rejects_what_torch_rejects_naming_the_argument(cfg, pdtype, mistake, data):
    torch.manual_seed(0)
    theirs = torch.nn.GRU(**cfg, dtype=pdtype)
    ours = grukit.GRU(**cfg, dtype=pdtype, reset_after=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    I, H = cfg["input_size"], cfg["hidden_size"]
    DL = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    T, N = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3))
    batched = data.draw(st.booleans())
    shape, hx_shape = ((T, N, I), (DL, N, H)) if batched else ((T, I), (DL, H))
    if batched and cfg["batch_first"]:
        shape = (N, T, I)
    dtype = hx_dtype = pdtype
    give_hx = data.draw(st.booleans())
    if mistake == "dims":
        shape = data.draw(st.sampled_from([(I,), (2, T, N, I), (1, 1, 1, 1, I)]))
    elif mistake == "features":
        shape = shape[:-1] + (I + data.draw(st.integers(1, 3)),)
    elif mistake == "empty":  # no time steps
        shape = (N, 0, I) if batched and cfg["batch_first"] else (0,) + shape[1:]
    elif mistake == "hx_dims":
        hx_shape, give_hx = ((DL, 1, N, H) if batched else (DL * H,)), True
    elif mistake == "hx_shape":
        k = data.draw(st.integers(0, len(hx_shape) - 1))
        hx_shape = hx_shape[:k] + (hx_shape[k] + data.draw(st.integers(1, 2)),) + hx_shape[k + 1 :]
        give_hx = True
    elif mistake == "dtype":
        dtype = data.draw(st.sampled_from([t for t in (F32, F64, torch.float16, torch.int64) if t != pdtype]))
    elif mistake == "hx_dtype":
        hx_dtype, give_hx = (
            data.draw(st.sampled_from([t for t in (F32, F64, torch.float16) if t != pdtype])),
            True,
        )
    x = torch.randn(shape, dtype=F64).to(dtype)
    hx = torch.randn(hx_shape, dtype=F64).to(hx_dtype) if give_hx else None
    note(f"input {tuple(x.shape)} {x.dtype}, hx {None if hx is None else (tuple(hx.shape), hx.dtype)}")
    try:
        want = theirs(x, hx)
    except (RuntimeError, ValueError, TypeError, IndexError):
        with pytest.raises((ValueError, TypeError, RuntimeError)) as info:
            ours(x, hx)
        message = str(info.value)
        assert message and any(word in message for word in _NAMES[mistake]), message
    else:  # torch accepts this one: so must grukit, with the same numbers
        got = ours(x, hx)
        _close(got[0], want[0], pdtype)
        _close(got[1], want[1], pdtype)


_BAD_CONSTRUCTOR = st.sampled_from(
    [
        ("input_size", 0),
        ("input_size", -2),
        ("hidden_size", 0),
        ("hidden_size", 2.5),
        ("hidden_size", "4"),
        ("num_layers", 0),
        ("num_layers", 1.0),
        ("dropout", -0.5),
        ("dropout", 1.5),
        ("dropout", float("nan")),
        ("dropout", "0.1"),
    ]
)
_BAD_VARIANT = st.sampled_from(
    [
        ("zoneout", 1.0),
        ("zoneout", -0.1),
        ("recurrent_dropout", 1.0),
        ("weight_dropout", 2),
        ("zoneout", float("nan")),
        ("layer_norm", 1),
        ("reset_after", None),
        ("backend", "gpu"),
        ("recurrent_dropout", "0.2"),
    ]
)


@given(cfg=configs(), bad=_BAD_CONSTRUCTOR)
def test_constructor_rejects_what_torch_rejects(cfg, bad):
    name, value = bad
    with pytest.raises((ValueError, TypeError, RuntimeError)):
        torch.nn.GRU(**(cfg | {name: value}))
    with pytest.raises((ValueError, TypeError)) as info:
        grukit.GRU(**(cfg | {name: value}))
    assert name in str(info.value), str(info.value)


@given(cfg=configs(), bad=_BAD_VARIANT)
def test_constructor_rejects_bad_options_naming_them(cfg, bad):
    """grukit's own options (which torch lacks) are checked as strictly, by name."""
    name, value = bad
    with pytest.raises((ValueError, TypeError)) as info:
        grukit.GRU(**(cfg | {name: value}))
    assert name in str(info.value) or "backend" in str(info.value), str(info.value)


# -- GRUCell and streaming ----------------------------------------------------------------------


@given(
    I=st.integers(1, 5),
    H=st.integers(1, 6),
    bias=st.booleans(),
    dtype=FLOAT,
    N=st.one_of(st.none(), st.integers(1, 4)),
    give_hx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cell_agrees_with_torch_cell(I, H, bias, dtype, N, give_hx, seed):
    torch.manual_seed(seed)
    theirs = torch.nn.GRUCell(I, H, bias=bias, dtype=dtype)
    ours = grukit.GRUCell(I, H, bias=bias, dtype=dtype, reset_after=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    batch = () if N is None else (N,)
    x = torch.randn(*batch, I, dtype=dtype)  # (N, I) or (I,)
    hx = torch.randn(*batch, H, dtype=dtype) if give_hx else None
    with torch.no_grad():
        _close(ours(x, hx), theirs(x, hx), dtype)
    with pytest.raises((ValueError, RuntimeError)) as info:  # the wrong features: both refuse
        theirs(torch.randn(*batch, I + 1, dtype=dtype))
    with pytest.raises((ValueError, RuntimeError)) as info:
        ours(torch.randn(*batch, I + 1, dtype=dtype))
    assert "input" in str(info.value) or "Expected" in str(info.value)


@given(cfg=configs(variants=True), dtype=FLOAT, reset_after=st.booleans(), fast=st.booleans(), data=st.data())
def test_stream_in_chunks_equals_one_pass(cfg, dtype, reset_after, fast, data):
    cfg = cfg | dict(bidirectional=False)  # a stream refuses a bidirectional GRU
    torch.manual_seed(0)
    gru = grukit.GRU(**cfg, dtype=dtype, reset_after=reset_after).eval()
    T = data.draw(st.integers(1, 12))
    unbatched = data.draw(st.booleans())
    N = 1 if unbatched else data.draw(st.integers(1, 3))
    x = torch.randn(T, N, cfg["input_size"], dtype=dtype)  # (T, N, I)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=4))) if T > 1 else []
    if unbatched:
        x = x[:, 0]  # (T, I)
    elif cfg["batch_first"]:
        x = x.transpose(0, 1)  # (N, T, I)
    time = 1 if cfg["batch_first"] and not unbatched else 0
    with torch.no_grad():
        whole = gru(x)[0]
        stream = gru.stream(fast=fast)
        parts = [stream(c) for c in torch.tensor_split(x, cuts, dim=time)]
    got = torch.cat(parts, dim=time)
    assert not got.isnan().any()
    torch.testing.assert_close(got, whole, **tols(dtype))
