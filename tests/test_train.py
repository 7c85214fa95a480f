"""The model-agnostic trainer: schedules, early stopping, checkpoints that are never corrupt,
resume that continues exactly where a run stopped."""

import json
import math
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from grukit.train import ConfigError, TrainConfig, Trainer, TrainingError, checkpoint
from grukit.train.config import from_dict


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)
    return TensorDataset(x, y)


def _loss(model, batch):
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean(), x.shape[0]


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1)


def _cfg(**kw):
    return TrainConfig(**{"epochs": 6, "batch_size": 32, "lr": 0.05, "progress": "off", **kw})


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(lr=-1.0), "lr must be a positive number"),
        (dict(schedule="linear"), "schedule must be one of cosine, plateau, constant, budget"),
        (dict(schedule="budget"), "schedule 'budget' decays the learning rate over max_time: set max_time"),
        (dict(clip_grad_norm=0), "clip_grad_norm must be a positive number or None"),
        (dict(progress="loud"), "progress must be one of"),
        (dict(patience=0), "patience must be a positive integer"),
        (dict(warmup_steps=-1), "warmup_steps must be a non-negative integer"),
        (dict(warmup_steps=2.5), "warmup_steps must be a non-negative integer"),
        (dict(precision="fp16"), "precision must be one of float32, bf16, got 'fp16'"),
    ],
)
def test_bad_configuration_is_refused_by_name(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw)


def test_unknown_options_are_errors():
    with pytest.raises(ConfigError, match="unknown TrainConfig option\\(s\\): epoch"):
        from_dict(TrainConfig, {"epoch": 3})
    assert from_dict(TrainConfig, _cfg().to_dict()) == _cfg()


class _Recorded(torch.utils.data.Dataset):
    """A dataset that logs, in order, the indices the trainer fetches (so a plain loop can replay
    the trainer's batches without knowing how it shuffles)."""

    def __init__(self, base):
        self.base, self.fetched = base, []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.fetched.append(int(i))
        return self.base[i]


def _plain_loop(cfg, train, val, order, epochs):
    """The training TrainConfig documents, written out in plain PyTorch: AdamW, the batch loss
    averaged over items, the gradient norm clipped, the learning rate of ``cfg.schedule`` set
    before each epoch (cosine from lr to 5% of lr over ``cfg.epochs``; plateau: halve when three
    epochs in a row bring no better validation loss, as torch's ReduceLROnPlateau with patience 2
    and its relative threshold 1e-4), each step's rate times ``min(1, k / cfg.warmup_steps)``
    at the k-th step of the run when warming up, on the batches ``order`` (N * epochs indices)
    gives. Returns per-epoch train loss, validation loss, learning rate and weights."""
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, bs = len(train), cfg.batch_size
    lr, best, flat, epochs_out, k = cfg.lr, math.inf, 0, [], 0
    for e in range(epochs):
        if cfg.schedule == "cosine":
            lr = cfg.lr * (0.05 + 0.95 * (1 + math.cos(math.pi * e / cfg.epochs)) / 2)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.tensor(order[e * n : (e + 1) * n])
        assert sorted(idx.tolist()) == list(range(n))  # every example once per epoch
        total = 0.0
        for b in range(0, n, bs):
            x, y = train[idx[b : b + bs]]
            opt.zero_grad()
            loss = ((model(x).squeeze(-1) - y) ** 2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            k += 1
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, k / cfg.warmup_steps) if cfg.warmup_steps else lr
            opt.step()
            total += loss.item() * len(x)
        with torch.no_grad():
            xv, yv = val.tensors
            v = sum(
                ((model(xv[b : b + bs]).squeeze(-1) - yv[b : b + bs]) ** 2).sum().item()
                for b in range(0, len(xv), bs)
            ) / len(xv)
        epochs_out.append(
            {
                "train_loss": total / n,
                "val_loss": v,
                "lr": lr,
                "weights": {k: t.clone() for k, t in model.state_dict().items()},
            }
        )
        if cfg.schedule == "plateau":
            best, flat = (v, 0) if v < best * (1 - 1e-4) else (best, flat + 1)
            if flat == 3:
                lr, flat = lr / 2, 0
    return epochs_out


def _least_squares(data):
    """The optimum of the linear regression on ``data``: (weights (3,), bias, mean squared error),
    in float64."""
    x, y = (t.double() for t in data.tensors)
    a = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(a, y[:, None]).solution[:, 0]
    return sol[:3], sol[3], ((a @ sol - y) ** 2).mean().item()


def _anticorrelated(n=64):
    """Validation targets of the opposite sign: the validation loss rises as training fits."""
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(5))
    return TensorDataset(x, -(x @ torch.tensor([1.0, -2.0, 0.5])))


@pytest.mark.parametrize(
    "schedule, val, warmup",
    [
        ("cosine", "related", 0),
        ("constant", "related", 0),
        ("plateau", "rising", 0),
        ("cosine", "related", 13),
        ("plateau", "rising", 20),
    ],
)
def test_training_matches_a_plain_pytorch_loop_and_writes_curves_and_checkpoints(
    tmp_path, schedule, val, warmup
):
    # (8 steps an epoch: a warm-up of 13 or 20 steps ends inside epoch 2 or 3)
    cfg = _cfg(schedule=schedule, epochs=8, patience=None, warmup_steps=warmup)
    val = _data(64, 1) if val == "related" else _anticorrelated()
    train = _Recorded(_data())
    model = _model()
    result = Trainer(model, cfg, _loss, out_dir=tmp_path).fit(train, val)
    h = result.history
    plain = _plain_loop(cfg, _data(), val, train.fetched, 8)
    for got, want in zip(h, plain, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-12)
    if schedule == "plateau":  # the rising validation loss halves the rate after epochs 4 and 7
        assert [e["lr"] for e in h] == [0.05] * 4 + [0.025] * 3 + [0.0125]
    # the weights kept are those of the best validation epoch
    best = min(range(8), key=lambda e: plain[e]["val_loss"])
    assert result.best_epoch == best + 1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, plain[best]["weights"][k], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "history.json").read_text()) == h
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    root = tmp_path / "checkpoints"
    last, best_ptr = checkpoint.load_pointer(root, "last"), checkpoint.load_pointer(root, "best")
    assert last["epoch"] == 8 and best_ptr["epoch"] == result.best_epoch
    kept = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert kept == sorted({last["checkpoint"], best_ptr["checkpoint"]})  # older ones pruned
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_training_reaches_the_least_squares_optimum():
    data = _data()
    model = _model()
    Trainer(model, _cfg(epochs=20, patience=None), _loss).fit(data)
    w, b, mse = _least_squares(data)
    torch.testing.assert_close(model.weight[0].double(), w, rtol=0, atol=0.01)
    assert abs(model.bias.item() - b.item()) < 0.01
    with torch.no_grad():
        fitted = ((model(data.tensors[0]).squeeze(-1) - data.tensors[1]) ** 2).double().mean().item()
    assert mse <= fitted < 1.01 * mse


def test_bf16_precision_runs_forward_and_loss_under_autocast_with_fresh_weights():
    """Each step's forward pass runs in bfloat16 (the loss function sees bfloat16 outputs, in
    training and validation), and training still reaches the least-squares optimum within
    bfloat16's precision."""
    dtypes = []

    def loss(model, batch):
        x, y = batch
        out = model(x).squeeze(-1)
        dtypes.append(out.dtype)
        return ((out.float() - y) ** 2).mean(), x.shape[0]

    data = _data()
    model = _model()
    result = Trainer(model, _cfg(epochs=20, patience=None, precision="bf16"), loss).fit(data, data)
    assert set(dtypes) == {torch.bfloat16}
    w, b, mse = _least_squares(data)
    torch.testing.assert_close(model.weight[0].double(), w, rtol=0, atol=0.05)
    with torch.no_grad():
        fitted = ((model(data.tensors[0]).squeeze(-1) - data.tensors[1]) ** 2).double().mean().item()
    assert fitted < 1.1 * mse
    assert result.history[-1]["val_loss"] == pytest.approx(fitted, rel=0.05)


def test_early_stopping_restores_the_best_weights(tmp_path):
    # validation targets unrelated to the inputs: the validation loss stops improving early
    g = torch.Generator().manual_seed(3)
    val = TensorDataset(torch.randn(64, 3, generator=g), 10 * torch.randn(64, generator=g))
    cfg = _cfg(epochs=40, patience=2)
    train = _Recorded(_data())
    model = _model()
    result = Trainer(model, cfg, _loss, out_dir=tmp_path).fit(train, val)
    plain = _plain_loop(cfg, _data(), val, train.fetched, result.epochs_run)
    losses = [e["val_loss"] for e in plain]
    # the plain loop's own rule: stop at the first epoch two epochs past the best so far
    stop = next(e for e in range(len(losses)) if e - min(range(e + 1), key=losses.__getitem__) >= 2)
    best = min(range(stop + 1), key=losses.__getitem__)
    assert result.stopped == "early stopping" and result.epochs_run == stop + 1 < 40
    assert result.best_epoch == best + 1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, plain[best]["weights"][k], rtol=1e-5, atol=1e-6)
    best_weights, _, meta = checkpoint.load(tmp_path / "checkpoints", "best")
    assert meta["epoch"] == result.best_epoch
    for k, v in model.state_dict().items():
        assert torch.equal(v, best_weights[k])


class _Interrupt:
    """A loss function that raises KeyboardInterrupt at a given call, like Ctrl-C."""

    def __init__(self, at):
        self.calls, self.at = 0, at

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return _loss(model, batch)


def test_resume_after_ctrl_c_gives_exactly_the_uninterrupted_run(tmp_path):
    full = _model()
    Trainer(full, _cfg(), _loss, out_dir=tmp_path / "full").fit(_data(), _data(64, 1))

    part = _model()
    calls_per_epoch = 256 // 32 + 64 // 32  # training batches + validation batches
    with pytest.raises(KeyboardInterrupt):  # in the middle of epoch 4
        Trainer(part, _cfg(), _Interrupt(3 * calls_per_epoch + 3), out_dir=tmp_path / "run").fit(
            _data(), _data(64, 1)
        )
    assert checkpoint.load_pointer(tmp_path / "run" / "checkpoints")["epoch"] == 3
    resumed = _model(seed=99)  # whatever it holds is replaced by the checkpoint
    result = Trainer(resumed, _cfg(), _loss, out_dir=tmp_path / "run", resume=True).fit(_data(), _data(64, 1))
    assert [e["epoch"] for e in result.history] == [1, 2, 3, 4, 5, 6]
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k])
    again = Trainer(_model(), _cfg(), _loss, out_dir=tmp_path / "run", resume=True).fit(_data(), _data(64, 1))
    assert again.stopped == "already complete"


def test_a_non_finite_loss_stops_with_advice():
    def bad(model, batch):
        return torch.tensor(float("nan"), requires_grad=True), 1

    with pytest.raises(TrainingError, match="became nan at epoch 1, step 1; try a lower learning rate"):
        Trainer(_model(), _cfg(), bad).fit(_data())


def test_a_pointer_to_a_missing_checkpoint_is_reported(tmp_path):
    Trainer(_model(), _cfg(epochs=1), _loss, out_dir=tmp_path).fit(_data())
    root = tmp_path / "checkpoints"
    last = checkpoint.load_pointer(root)
    (root / last["checkpoint"] / "model.safetensors").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="missing or incomplete"):
        Trainer(_model(), _cfg(epochs=2), _loss, out_dir=tmp_path, resume=True).fit(_data())


def test_checkpoints_hold_no_pickled_objects(tmp_path):
    Trainer(_model(), _cfg(epochs=1), _loss, out_dir=tmp_path).fit(_data())
    folder = tmp_path / "checkpoints" / checkpoint.load_pointer(tmp_path / "checkpoints")["checkpoint"]
    torch.load(folder / "trainer.pt", weights_only=True)  # raises if anything needs unpickling
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.safetensors", "trainer.pt"]


# -- the wall-clock budget and ordered datasets ------------------------------------------------


class _SlowLoss:
    """``_loss`` with a pause per training step, so a small budget ends an epoch part way."""

    def __init__(self, pause):
        self.pause = pause

    def __call__(self, model, batch):
        import time

        if model.training:
            time.sleep(self.pause)
        return _loss(model, batch)


def test_max_time_ends_an_epoch_early_at_a_checkpoint_and_a_larger_budget_continues(tmp_path):
    data = _data(256)  # 8 batches of 32 per epoch
    cfg = _cfg(epochs=3, max_time=0.25, patience=None)
    result = Trainer(_model(), cfg, _SlowLoss(0.05), out_dir=tmp_path).fit(data, _data(64, 1))
    assert result.stopped == "time budget"
    assert result.epochs_run == 1 and result.history[0]["samples"] < 256  # cut part way
    meta = checkpoint.load_pointer(tmp_path / "checkpoints")
    assert meta["checkpoint"] == "epoch-0001"
    # the same budget: complete, nothing trained
    again = Trainer(_model(), cfg, _SlowLoss(0.05), out_dir=tmp_path, resume=True).fit(data, _data(64, 1))
    assert again.stopped == "already complete"
    # a larger budget continues with epoch 2
    more = _cfg(epochs=3, max_time=60.0, patience=None)
    longer = Trainer(_model(), more, _SlowLoss(0.0), out_dir=tmp_path, resume=True).fit(data, _data(64, 1))
    assert longer.stopped == "epochs"
    assert [h["epoch"] for h in longer.history] == [1, 2, 3]
    assert longer.history[1]["samples"] == 256


def test_max_time_is_validated():
    for bad in (0, -1.0, float("nan"), True, "10"):
        with pytest.raises(ConfigError, match="max_time must be a positive number"):
            TrainConfig(max_time=bad)


class _Ordered(torch.utils.data.Dataset):
    """Whole batches in a fixed order; records ``set_epoch`` calls and what was fetched."""

    ordered = True

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.batches = [(torch.randn(5, 3, generator=g), torch.randn(5, generator=g)) for _ in range(4)]
        self.epochs, self.fetched = [], []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        self.fetched.append(i)
        return self.batches[i]


class _PassLoss:
    def __init__(self):
        self.passes = []

    def begin_pass(self, training):
        self.passes.append(training)

    def __call__(self, model, batch):
        return _loss(model, batch)


def test_ordered_datasets_are_read_in_order_whole_batches_with_pass_hooks():
    data, loss = _Ordered(), _PassLoss()
    cfg = _cfg(epochs=2, batch_size=2, patience=None)  # batch_size does not regroup ordered items
    Trainer(_model(), cfg, loss).fit(data, _data(10))
    assert data.epochs == [1, 2]
    assert data.fetched == [0, 1, 2, 3] * 2
    assert loss.passes == [True, False, True, False]
    # the same updates as a plain loop over the batches in order
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = Trainer(model, cfg, loss)._schedule(opt)
    for _ in range(2):
        for x, y in data.batches:
            opt.zero_grad()
            l, _ = _loss(model, (x, y))
            l.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            opt.step()
        sched.step()
    trained = _model()
    Trainer(trained, cfg, _PassLoss()).fit(_Ordered(), _data(10))
    for a, b in zip(model.parameters(), trained.parameters()):
        torch.testing.assert_close(a, b)


def test_the_budget_schedule_scales_each_step_by_the_share_of_time_left(tmp_path, monkeypatch):
    """With a clock that moves one second per training batch, a budget of 20 s and 8 batches an
    epoch, the k-th step of the run (1-based) has k seconds behind it: its rate is lr * (20 - k) / 20
    (Li, Yumer & Ramanan 2020: linear to 0 at the end of the budget), the epoch's logged rate is
    the last step's, and the run ends at the budget, after step 20 of 24."""
    from types import SimpleNamespace

    from grukit.train import trainer as trainer_module

    clock = [1000.0]
    monkeypatch.setattr(
        trainer_module, "time", SimpleNamespace(perf_counter=lambda: clock[0], strftime=time.strftime)
    )
    scales = []
    real_step = trainer_module._step

    def recording_step(optimizer, scale):
        scales.append(scale)
        real_step(optimizer, scale)

    monkeypatch.setattr(trainer_module, "_step", recording_step)

    def loss(model, batch):
        if model.training:
            clock[0] += 1.0
        return _loss(model, batch)

    cfg = _cfg(epochs=3, schedule="budget", max_time=20.0, patience=None)
    result = Trainer(_model(), cfg, loss, out_dir=tmp_path).fit(_data(), _data(64, 1))
    assert scales == pytest.approx([(20 - k) / 20 for k in range(1, 21)], abs=1e-12)
    assert [h["lr"] for h in result.history] == pytest.approx([0.05 * 12 / 20, 0.05 * 4 / 20, 0.0])
    assert result.stopped == "time budget"
