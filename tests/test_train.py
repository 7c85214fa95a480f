"""The model-agnostic trainer: schedules, early stopping, checkpoints that are never corrupt,
resume that continues exactly where a run stopped."""

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from grukit.train import ConfigError, TrainConfig, Trainer, TrainingError
from grukit.train import checkpoint
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
        (dict(schedule="linear"), "schedule must be one of cosine, plateau, constant"),
        (dict(clip_grad_norm=0), "clip_grad_norm must be a positive number or None"),
        (dict(progress="loud"), "progress must be one of"),
        (dict(patience=0), "patience must be a positive integer"),
    ],
)
def test_bad_configuration_is_refused_by_name(kw, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kw)


def test_unknown_options_are_errors():
    with pytest.raises(ConfigError, match="unknown TrainConfig option\\(s\\): epoch"):
        from_dict(TrainConfig, {"epoch": 3})
    assert from_dict(TrainConfig, _cfg().to_dict()) == _cfg()


@pytest.mark.parametrize("schedule", ["cosine", "plateau", "constant"])
def test_training_reduces_the_loss_and_writes_curves_and_checkpoints(tmp_path, schedule):
    model = _model()
    result = Trainer(model, _cfg(schedule=schedule), _loss, out_dir=tmp_path).fit(_data(), _data(64, 1))
    h = result.history
    assert len(h) == 6 and h[-1]["train_loss"] < h[0]["train_loss"] / 5
    assert result.best_val_loss == min(e["val_loss"] for e in h)
    assert json.loads((tmp_path / "history.json").read_text()) == h
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    root = tmp_path / "checkpoints"
    last, best = checkpoint.load_pointer(root, "last"), checkpoint.load_pointer(root, "best")
    assert last["epoch"] == 6 and best["epoch"] == result.best_epoch
    kept = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert kept == sorted({last["checkpoint"], best["checkpoint"]})  # older ones pruned
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    if schedule == "cosine":
        assert h[-1]["lr"] < h[0]["lr"]


def test_early_stopping_restores_the_best_weights(tmp_path):
    model = _model()
    # validation targets unrelated to the inputs: the validation loss stops improving early
    g = torch.Generator().manual_seed(3)
    val = TensorDataset(torch.randn(64, 3, generator=g), 10 * torch.randn(64, generator=g))
    result = Trainer(model, _cfg(epochs=40, patience=2), _loss, out_dir=tmp_path).fit(_data(), val)
    assert result.stopped == "early stopping" and result.epochs_run < 40
    assert result.epochs_run == result.best_epoch + 2
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
            _data(), _data(64, 1))
    assert checkpoint.load_pointer(tmp_path / "run" / "checkpoints")["epoch"] == 3
    resumed = _model(seed=99)  # whatever it holds is replaced by the checkpoint
    result = Trainer(resumed, _cfg(), _loss, out_dir=tmp_path / "run", resume=True).fit(
        _data(), _data(64, 1))
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
