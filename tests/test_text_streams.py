"""Truncated back-propagation through time over contiguous streams: the batches cover the text
as the layout says, and the state carried from window to window makes a pass equal one long
forward call over each stream."""

import math

import numpy as np
import pytest
import torch

from grukit.apps.text.model import LMConfig, LMNet
from grukit.apps.text.streams import StreamBatches, TBPTTLoss
from grukit.train.config import ConfigError


def test_windows_cover_every_target_of_every_stream_once_in_order():
    ids = np.arange(103)  # 3 streams of 34 (the last token dropped)
    data = StreamBatches(ids, streams=3, bptt=10)
    assert data.windows == math.ceil(33 / 10) == len(data) == 4
    xs, ys, firsts = zip(*(data[i] for i in range(len(data))))
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)
    for s in range(3):
        row = np.arange(34 * s, 34 * s + 34)
        np.testing.assert_array_equal(x[s].numpy(), row[:-1])
        np.testing.assert_array_equal(y[s].numpy(), row[1:])
    assert firsts == (True, False, False, False)
    assert data.tokens == 3 * 33


def test_epochs_shorter_than_a_pass_continue_it_and_wrap():
    ids = np.arange(2 * 41)  # 2 streams of 41: 40 targets, 4 windows of 10
    data = StreamBatches(ids, streams=2, bptt=10, windows_per_epoch=3)
    seen = []
    for epoch in (1, 2, 3):
        data.set_epoch(epoch)
        assert len(data) == 3
        seen += [(int(data[i][0][0, 0]), bool(data[i][2])) for i in range(3)]
    # windows 0 1 2 | 3 0 1 | 2 3 0: the state restarts at window 0 and at each epoch's start
    assert [s for s, _ in seen] == [0, 10, 20, 30, 0, 10, 20, 30, 0]
    assert [f for _, f in seen] == [True, False, False, True, True, False, True, False, True]


def test_shards_split_the_streams_between_processes():
    ids = np.arange(4 * 12)
    data = StreamBatches(ids, streams=4, bptt=5)
    a, b = data.shard(0, 2), data.shard(1, 2)
    torch.testing.assert_close(a[0][0], data[0][0][0::2])
    torch.testing.assert_close(b[1][1], data[1][1][1::2])
    with pytest.raises(ValueError, match="cannot be shared"):
        data.shard(0, 5)


@pytest.mark.parametrize("reset_after", [False, True])
def test_a_pass_with_the_state_carried_equals_one_long_forward_call(reset_after):
    torch.manual_seed(0)
    net = LMNet(LMConfig(hidden_size=12, num_layers=2, reset_after=reset_after), 7).double().eval()
    ids = np.random.default_rng(1).integers(0, 7, 3 * 50)
    data = StreamBatches(ids, streams=3, bptt=8)
    loss = TBPTTLoss()
    loss.begin_pass(False)
    total = 0.0
    with torch.no_grad():
        for i in range(len(data)):
            bits, n = loss(net, data[i])
            total += bits.item() * n
        rows = torch.from_numpy(ids.reshape(3, 50))
        logits, _ = net(rows[:, :-1])  # (3, 49, V): every stream in one call from zeros
        logp = torch.log_softmax(logits, -1).gather(2, rows[:, 1:, None])
    assert total == pytest.approx(-logp.sum().item() / math.log(2), rel=1e-12)


def test_too_little_text_for_the_streams_is_refused():
    with pytest.raises(ValueError, match="cannot fill 4 streams"):
        StreamBatches(np.arange(7), streams=4, bptt=3)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(level="word"), "level must be one of char, byte"),
        (dict(hidden_size=0), "hidden_size must be a positive integer"),
        (dict(zoneout=1.0), "zoneout must be a probability"),
        (dict(tie_weights=1), "tie_weights must be true or false"),
        (dict(unknown="ab"), "unknown must be one character"),
        (dict(level="byte", unknown="?"), "level='byte' has no unknown symbols"),
        (dict(embedding_size=-1), "embedding_size must be a non-negative integer"),
    ],
)
def test_bad_model_options_are_refused_by_name(kw, message):
    with pytest.raises(ConfigError, match=message):
        LMConfig(**kw)


def test_tied_weights_share_one_matrix_and_a_projection_bridges_sizes():
    net = LMNet(LMConfig(hidden_size=16, embedding_size=8), 5)
    assert net.head.weight is net.embedding.weight and net.proj.weight.shape == (8, 16)
    untied = LMNet(LMConfig(hidden_size=16, embedding_size=8, tie_weights=False), 5)
    assert untied.proj is None and untied.head.weight.shape == (5, 16)
