"""``ForecasterEnsemble``: K ``GRUForecaster`` members trained alike but for their seeds (seed,
seed + 1, ..., seed + K - 1) and, if asked, their input lengths (``input_lens``, cycled over the
members, as N-BEATS varies its lookback window), their forecasts median-combined, as N-BEATS
combines its members:

    q_hat[s, t, q] = median_k q_hat_k[s, t, q]        (every series s, step t and quantile q)

The median keeps each member's quantile order (if a_k <= b_k for every k, then
median(a) <= median(b)), so intervals never cross. Training costs K times one forecaster's.

Estimator contract (DESIGN.md): ``fit(series) -> self``, ``predict(h, data)``, ``save(dir)`` /
``load(dir)`` (each member in ``dir/member{k}/``, ``ensemble.json`` beside them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grukit._io import atomic_write_text
from grukit.apps.contract import NotFittedError
from grukit.apps.forecast import Forecast, GRUForecaster
from grukit.train.config import ConfigError, TrainConfig

__all__ = ["ForecasterEnsemble", "EnsembleResult"]

FORMAT = "grukit.ForecasterEnsemble/1"


@dataclass
class EnsembleResult:
    """The members' training results, one entry a member (the fields of one trainer's result)."""

    epochs_run: list[int]
    best_epoch: list[int]
    best_val_loss: list[float]
    stopped: list[str | None]


class ForecasterEnsemble:
    """``members`` GRU forecasters, median-combined (see the module docstring); ``train`` and
    ``hyper`` as for :class:`GRUForecaster`, the seed being the first member's. ``input_lens``:
    member k reads ``input_lens[k % len(input_lens)]`` points (instead of ``input_len``)."""

    def __init__(
        self,
        horizon: int,
        season: int = 1,
        *,
        members: int = 3,
        input_lens: Sequence[int] | None = None,
        train: TrainConfig | dict | None = None,
        **hyper,
    ) -> None:
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise ConfigError(f"members must be a positive integer, got {members!r}")
        lens: list[int | None] = [hyper.pop("input_len", None)]
        if input_lens is not None:
            if lens[0] is not None:
                raise ConfigError("give input_len or input_lens, not both")
            lens = list(input_lens)
            if not lens or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lens):
                raise ConfigError(f"input_lens must be positive integers, got {input_lens!r}")
        base = TrainConfig.coerce(train)
        self.members = [
            GRUForecaster(
                horizon,
                season,
                train={**base.to_dict(), "seed": base.seed + k},
                input_len=lens[k % len(lens)],
                **hyper,
            )
            for k in range(members)
        ]
        self.config = self.members[0].config
        self.train_config = base

    def fit(
        self, data, *, out_dir: str | os.PathLike | None = None, resume: bool = False, log=None
    ) -> ForecasterEnsemble:
        """Train every member on ``data`` (each into ``out_dir/member{k}`` when given)."""
        for k, member in enumerate(self.members):
            if log is not None:
                log(f"ensemble member {k + 1}/{len(self.members)} (seed {member.train_config.seed})")
            member.fit(
                data,
                out_dir=None if out_dir is None else Path(out_dir) / f"member{k}",
                resume=resume,
                log=log,
            )
        self._fitted()
        return self

    def _fitted(self) -> None:
        self.config_ = self.members[0].config_
        results = [m.result_ for m in self.members if hasattr(m, "result_")]
        self.result_ = (
            EnsembleResult(
                *(
                    list(v)
                    for v in zip(*[(r.epochs_run, r.best_epoch, r.best_val_loss, r.stopped) for r in results])
                )
            )
            if results
            else None
        )

    def predict(self, h: int | None = None, data=None) -> Forecast:
        """The members' forecasts, median-combined for every quantile."""
        if not hasattr(self, "config_"):
            raise NotFittedError("this ForecasterEnsemble is not fitted yet: call fit() or load()")
        each = [m.predict(h, data) for m in self.members]
        quantiles = {
            q: np.median(np.stack([f.quantiles[q] for f in each]), axis=0)  # (K, S, h) -> (S, h)
            for q in each[0].quantiles
        }
        first = each[0]
        return Forecast(first.ids, quantiles[0.5], quantiles, first.timestamps)

    def save(self, path: str | os.PathLike) -> None:
        """Each member into ``path/member{k}`` (written as :meth:`GRUForecaster.save` does), then
        ``path/ensemble.json``, which :meth:`load` reads first."""
        path = Path(path)
        for k, member in enumerate(self.members):
            member.save(path / f"member{k}")
        atomic_write_text(
            path / "ensemble.json", json.dumps({"format": FORMAT, "members": len(self.members)})
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> ForecasterEnsemble:
        path = Path(path)
        try:
            meta = json.loads((path / "ensemble.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is not an ensemble folder (no ensemble.json)") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}/ensemble.json: expected format {FORMAT}, got {meta.get('format')!r}")
        self = cls.__new__(cls)
        self.members = [GRUForecaster.load(path / f"member{k}") for k in range(meta["members"])]
        self.config = self.members[0].config
        self.train_config = self.members[0].train_config
        self._fitted()
        return self
