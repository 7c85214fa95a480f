"""A fitted detector's folder: ``model.safetensors`` (the ensemble's weights, keys ``0.*``,
``1.*``, ...) and ``detector.json`` (format, settings, standardisation, robust statistics,
threshold). No pickle anywhere.

``save_detector`` writes both files into a staging folder and swaps them in together
(``grukit._io.updating_folder``): a crash never leaves the weights of one fit beside the JSON of
another, and the folder's other entries (a run's ``config.json``, its checkpoints) stay.
``load_detector`` reads format /2 and format /1 (one autoencoder without a clock, unprefixed
weights, and the statistics of its raw errors, which equal member statistics 0 and 1).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

import grukit
from grukit._io import updating_folder
from grukit.apps.anomaly.networks import build_network
from grukit.data.series import DataError

__all__ = ["FORMAT", "FORMATS", "save_detector", "load_detector"]

FORMAT = "grukit.GRUAnomalyDetector/2"  # /2: an ensemble of autoencoders (``0.``, ``1.``, ...)
FORMATS = ("grukit.GRUAnomalyDetector/1", FORMAT)


def write_json(path: Path, meta: dict) -> None:
    """``detector.json`` (a plain write: the staging folder's swap is the atomic step)."""
    path.write_text(json.dumps(meta, indent=1))


def save_detector(det, path: str | os.PathLike) -> None:
    """Write a fitted ``GRUAnomalyDetector`` into the folder ``path`` (made if absent)."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "grukit": grukit.__version__,
        "detector": asdict(det.config),
        "train": det.train_config.to_dict(),
        "channels": det.channels_,
        "period": det.period_,
        "mean": det.mean_.tolist(),
        "std": det.std_.tolist(),
        "center": det.center_,
        "spread": det.spread_,
        "threshold": det.threshold_,
        "member_center": det.member_center_.tolist(),
        "member_spread": det.member_spread_.tolist(),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in det.net_.state_dict().items()}
    with updating_folder(path) as stage:
        save_file(tensors, str(stage / "model.safetensors"))
        write_json(stage / "detector.json", meta)


def _check_sizes(weights: Path, channels: int, cfg, fmt: str) -> None:
    """Refuse a ``detector.json`` whose sizes (channels, hidden size, ensemble, ...) the weights
    file does not hold, before anything of those sizes is allocated: the networks are built on
    the meta device and their shapes compared with the file's (``ValueError``)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        held = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    if fmt == FORMATS[0]:
        held = {f"0.{k}": v for k, v in held.items()}
    members = {k.split(".", 1)[0] for k in held}
    if cfg.ensemble != len(members):
        raise ValueError(
            f"the description declares {cfg.ensemble} networks, the weights file holds {len(members)}"
        )
    with torch.device("meta"):
        want = nn.ModuleList(build_network(channels, cfg) for _ in range(cfg.ensemble)).state_dict()
    for name, t in want.items():
        if held.get(name, tuple(t.shape)) != tuple(t.shape):
            raise ValueError(
                f"the description asks for {name} of shape {tuple(t.shape)}, the weights file holds {held[name]}"
            )


def load_detector(cls, path: str | os.PathLike):
    """A fitted ``cls`` (``GRUAnomalyDetector``) from a folder written by ``save_detector``.
    Raises FileNotFoundError without ``detector.json``, DataError for a folder it cannot read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "detector.json").is_file():
        raise FileNotFoundError(f"{path} is not an anomaly detector folder (no detector.json)")
    try:
        meta = json.loads((path / "detector.json").read_text())
        fmt = meta.get("format")
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}, expected {FORMAT!r}")
        hyper = dict(meta["detector"])
        hyper.setdefault("time_features", 0)  # saved before the decoder had a clock
        hyper.setdefault("model", "autoencoder")  # saved before the forecaster: the only model then
        self = cls(hyper.pop("mode"), train=meta["train"], **hyper)
        self.channels_ = int(meta["channels"])
        _check_sizes(path / "model.safetensors", self.channels_, self.config, fmt)
        self.net_ = nn.ModuleList(
            build_network(self.channels_, self.config) for _ in range(self.config.ensemble)
        )
        weights = load_file(str(path / "model.safetensors"))
        if fmt == FORMATS[0]:  # one autoencoder, its own keys, errors normalised once
            weights = {f"0.{k}": v for k, v in weights.items()}
            meta.update(member_center=[0.0], member_spread=[1.0])
        self.net_.load_state_dict(weights)
        self.net_.eval()
        self.mean_, self.std_ = np.array(meta["mean"]), np.array(meta["std"])
        self.member_center_ = np.array(meta["member_center"], dtype=float)
        self.member_spread_ = np.array(meta["member_spread"], dtype=float)
        K = self.config.ensemble
        if self.member_center_.shape != (K,) or self.member_spread_.shape != (K,):
            raise ValueError(
                f"member_center/member_spread must hold {K} numbers, got "
                f"{self.member_center_.shape} and {self.member_spread_.shape}"
            )
        self.center_, self.spread_ = float(meta["center"]), float(meta["spread"])
        self.threshold_ = float(meta["threshold"])
        self.period_ = meta.get("period")  # the data's period when the window was chosen; None before
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise DataError(f"{path}: not a readable anomaly detector ({type(exc).__name__}: {exc})") from None
    return self
