"""``GRUForecaster``: one global GRU trained across many series, direct multi-step forecasts
with quantile intervals.

The network reads a window of the last ``input_len`` points (scaled by the window's mean absolute
value, with a mask where a short series is padded) through a ``grukit.GRU`` and maps its final
state to ``horizon x len(quantiles)`` outputs, added to the last observed value (a naive
forecast the network corrects):

    s            = mean |x_{t-L+1..t}|                       (per window)
    out, h_n     = GRU([x / s, mask])                         # (N, L, 2) -> (N, H)
    q_hat        = x_t / s + W h_n[-1] + b                    # (N, h, Q)
    forecast     = s * q_hat                                  (the 0.5 quantile is the point forecast)

trained with the pinball (quantile) loss, averaged over steps and quantiles. Estimator contract
(DESIGN.md): hyperparameters in the constructor, ``fit(series) -> self``, ``predict(h)``,
``save(dir)`` / ``load(dir)``; fitted attributes end in ``_``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

import grukit
from grukit._extras import require
from grukit.apps import model_folder
from grukit.apps.contract import NotFittedError
from grukit.data.series import DataError, SeriesSet, from_arrays, future_times
from grukit.data.windows import WindowDataset, make_inputs, window_ends
from grukit.train.config import ConfigError, TrainConfig

__all__ = ["GRUForecaster", "ForecasterConfig", "Forecast", "NotFittedError"]

FORMAT = "grukit.GRUForecaster/1"


@dataclass
class ForecasterConfig:
    """The forecaster's hyperparameters.

    Attributes:
        horizon: steps forecast at once (direct multi-step); predict(h) allows h <= horizon.
        season: the seasonal period (12 for monthly data, 1 for none); sets the default window
            and the seasonal baselines and MASE.
        input_len: points the GRU reads; default max(3 seasons, 2 horizons, 8, min_input) - long enough
            to see the seasonal pattern and the trend (chosen on M3 monthly). Windows longer
            than a series are left-padded and masked: on M3 yearly (median 19 points, so most
            training windows are mostly padding) capping it at what the median series fills
            (7) measured worse than 12 (docs/forecasting.md).
        min_input: fewest real (unpadded) points in a training window. Default (None), set by
            ``fit`` from the data (:meth:`resolve`): min(input_len, max(season, 4), the shortest
            series - horizon, at least 1), so that every series has a validation window (M1
            yearly has 9-point series for a horizon of 6).
        hidden_size, num_layers, dropout: the GRU's size. One layer of 64: on M3 monthly it
            scored 13.82 sMAPE against 14.02 for two layers, in less time (docs/forecasting.md).
        reset_after: the formulation; False is the spec's GRU.
        quantiles: the quantiles to forecast; must include 0.5 (the point forecast). The
            default gives an 80% interval.
        deseasonalize: divide each series by its classical multiplicative seasonal indices
            (where a 90% autocorrelation test finds seasonality, as the M competitions'
            benchmarks do) before the GRU sees it, and multiply the forecast back; the GRU
            then spends its capacity on level and trend. Ignored when season is 1.
    """

    horizon: int
    season: int = 1
    input_len: int | None = None
    min_input: int | None = None
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.1
    reset_after: bool = False
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    deseasonalize: bool = True

    def __post_init__(self) -> None:
        for name in ("horizon", "season", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("input_len", "min_input"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.input_len is None:
            self.input_len = max(3 * self.season, 2 * self.horizon, 8, self.min_input or 1)
        if self.min_input is not None and self.min_input > self.input_len:
            raise ConfigError(f"min_input ({self.min_input}) must not exceed input_len ({self.input_len})")
        if not isinstance(self.deseasonalize, bool):
            raise ConfigError(f"deseasonalize must be true or false, got {self.deseasonalize!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        q = list(self.quantiles)
        if (
            not q
            or any(not isinstance(v, (int, float)) or not 0 < v < 1 for v in q)
            or 0.5 not in q
            or sorted(set(q)) != q
        ):
            raise ConfigError(f"quantiles must be increasing numbers in (0, 1) including 0.5, got {q!r}")
        self.quantiles = [float(v) for v in q]

    def resolve(self, lengths: list[int]) -> ForecasterConfig:
        """This configuration with ``min_input`` chosen for series of these lengths where it was
        left to the default (the attribute above says how)."""
        if self.min_input is not None:
            return self
        min_input = max(min(self.input_len, max(self.season, 4), min(lengths) - self.horizon), 1)
        return replace(self, min_input=min_input)


class ForecastNet(nn.Module):
    """GRU encoder + linear head; see the module docstring."""

    def __init__(self, cfg: ForecasterConfig) -> None:
        super().__init__()
        self.horizon, self.nq = cfg.horizon, len(cfg.quantiles)
        self.gru = grukit.GRU(
            2,
            cfg.hidden_size,
            cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            reset_after=cfg.reset_after,
        )
        self.head = nn.Linear(cfg.hidden_size, cfg.horizon * self.nq)
        nn.init.zeros_(self.head.weight)  # start from the naive forecast
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        _, h_n = self.gru(torch.stack([x, mask], -1))  # (N, L, 2) -> (layers, N, H)
        delta = self.head(h_n[-1]).view(N, self.horizon, self.nq)  # (N, h, Q)
        return x[:, -1, None, None] + delta  # (N, h, Q)


def pinball(pred: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean quantile loss: pred (N, h, Q), y (N, h), q (Q,)."""
    diff = y[..., None] - pred  # (N, h, Q)
    return torch.maximum(q * diff, (q - 1) * diff).mean()


@dataclass
class Forecast:
    """Forecasts for many series: ``point`` (S, h) and ``quantiles`` {q: (S, h)}; ``timestamps``
    (S, h) when the series had them."""

    ids: list[str]
    point: np.ndarray
    quantiles: dict[float, np.ndarray]
    timestamps: list[np.ndarray] | None = None

    def to_frame(self):
        pd = require("pandas", "apps", what="Forecast.to_frame")

        rows = []
        S, h = self.point.shape
        for i, sid in enumerate(self.ids):
            for k in range(h):
                row = {"id": sid, "step": k + 1}
                if self.timestamps is not None:
                    row["timestamp"] = self.timestamps[i][k]
                row["forecast"] = self.point[i, k]
                for q, arr in self.quantiles.items():
                    if q != 0.5:
                        row[f"q{q:g}"] = arr[i, k]
                rows.append(row)
        return pd.DataFrame(rows)


def _seasonal(values: list[np.ndarray], cfg: ForecasterConfig, h: int):
    """Deseasonalised series and the (h,) factors to multiply their forecasts by."""
    from grukit.apps.baselines import seasonal_indices

    out, future = [], []
    for v in values:
        idx = seasonal_indices(v, cfg.season) if cfg.deseasonalize and cfg.season > 1 else None
        if idx is None:
            out.append(v)
            future.append(np.ones(h))
        else:
            n = len(v)
            out.append(v / idx[np.arange(n) % cfg.season])
            future.append(idx[np.arange(n, n + h) % cfg.season])
    return out, np.stack(future)  # list of (n_i,), (S, h)


def _as_series(data) -> SeriesSet:
    if isinstance(data, SeriesSet):
        return data
    return from_arrays(data)


class GRUForecaster:
    """A global GRU forecaster (see the module docstring).

    >>> f = GRUForecaster(horizon=18, season=12, train={"epochs": 20}).fit(series)
    >>> f.predict(18).point          # (S, 18) from the end of each fitted series
    """

    def __init__(
        self, horizon: int, season: int = 1, *, train: TrainConfig | dict | None = None, **hyper
    ) -> None:
        self.config = ForecasterConfig(horizon=horizon, season=season, **hyper)
        self.train_config = TrainConfig.coerce(train)

    # -- fitting -------------------------------------------------------------------------------

    def _check_lengths(self, series: SeriesSet, cfg: ForecasterConfig) -> None:
        need = cfg.min_input + cfg.horizon
        short = series.shorter_than(need)
        if short:
            raise DataError(
                f"{short}; training needs at least min_input + horizon "
                f"= {cfg.min_input} + {cfg.horizon} = {need}"
            )

    def fit(
        self, data, *, out_dir: str | os.PathLike | None = None, resume: bool = False, log=None
    ) -> GRUForecaster:
        """Train on ``data`` (a ``SeriesSet``, an array, a list or dict of arrays). The last
        ``horizon`` points of every series are the validation target (early stopping); training
        windows end before them. With ``out_dir``, checkpoints, ``history.json`` and
        ``learning_curves.png`` go there and ``resume`` continues an interrupted run. The
        configuration used, with ``min_input`` chosen from the data, is ``config_``."""
        from grukit.train.trainer import Trainer

        series = _as_series(data)
        cfg = self.config.resolve([len(v) for v in series.values])
        self._check_lengths(series, cfg)
        values, _ = _seasonal([np.asarray(v, dtype=np.float64) for v in series.values], cfg, 1)
        lengths = [len(v) for v in values]
        train_w = window_ends(
            lengths, cfg.horizon, cfg.min_input, last_end=[n - cfg.horizon for n in lengths]
        )
        val_w = np.array([[s, n - cfg.horizon] for s, n in enumerate(lengths)], dtype=np.int64)
        if len(train_w) == 0:
            train_w, val_w = val_w, None  # too short to hold anything out: train on all, no val
        torch.manual_seed(self.train_config.seed)
        self.net_ = ForecastNet(cfg)
        q = torch.tensor(cfg.quantiles)

        def loss_fn(net, batch):
            x, mask, y, _ = batch
            return pinball(net(x, mask), y, q), x.shape[0]

        train = WindowDataset(values, train_w, cfg.input_len, cfg.horizon)
        val = WindowDataset(values, val_w, cfg.input_len, cfg.horizon) if val_w is not None else None
        trainer = Trainer(self.net_, self.train_config, loss_fn, out_dir=out_dir, resume=resume, log=log)
        self.result_ = trainer.fit(train, val)
        self.net_.eval()
        self.series_ = series
        self.config_ = cfg
        return self

    # -- forecasting ---------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this GRUForecaster is not fitted yet: call fit() or load()")

    @torch.no_grad()
    def predict(self, h: int | None = None, data=None) -> Forecast:
        """Forecast ``h`` (default: the trained horizon) steps after the end of each series in
        ``data`` (default: the series it was fitted on)."""
        self._check_fitted()
        cfg = self.config_
        h = cfg.horizon if h is None else h
        if isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= cfg.horizon:
            raise ConfigError(
                f"the model was trained for a horizon of {cfg.horizon} steps; asked for {h!r} "
                f"(forecasts are direct, so h must be between 1 and {cfg.horizon})"
            )
        series = self.series_ if data is None else _as_series(data)
        values, factors = _seasonal([np.asarray(v, dtype=np.float64) for v in series.values], cfg, h)
        which = np.arange(len(values))
        ends = np.array([len(v) for v in values], dtype=np.int64)
        x, mask, scale = make_inputs(values, which, ends, cfg.input_len)
        dtype = self.net_.head.weight.dtype
        out = self.net_(torch.from_numpy(x).to(dtype), torch.from_numpy(mask).to(dtype))  # (S, H, Q)
        out = out.double().numpy()[:, :h, :] * scale[:, None, None] * factors[:, :, None]
        # quantile outputs are trained separately; sort so intervals never cross
        stacked = np.sort(out, axis=2)
        quantiles = {q: stacked[:, :, i] for i, q in enumerate(cfg.quantiles)}
        stamps = None
        if series.timestamps is not None and series.freq is not None:
            # integer time continues as integers (last + k * step); dates follow the frequency
            stamps = [future_times(t[-1], series.freq, h) for t in series.timestamps]
        return Forecast(list(series.ids), quantiles[0.5], quantiles, stamps)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path/model.safetensors``, ``path/forecaster.json`` and the fitted series
        (``path/series.npz``, read back without pickle), all three in one step: a crash leaves
        the previous forecaster whole, and ``path``'s other entries (a run's ``config.json``,
        its checkpoints) stay.

        ``series.npz`` holds values ``v{i}`` and either timestamps ``t{i}`` (int64 nanoseconds,
        ``"timestamps": true`` in the JSON) or integer times ``p{i}`` (``"periods": true``, the
        JSON's ``freq`` then being the step); an older grukit loads the latter without times."""
        self._check_fitted()
        s = self.series_
        arrays = {f"v{i}": v for i, v in enumerate(s.values)}
        if s.integer_time:
            arrays.update({f"p{i}": t.astype(np.int64) for i, t in enumerate(s.timestamps)})
        elif s.timestamps is not None:
            arrays.update(
                {f"t{i}": t.astype("datetime64[ns]").astype(np.int64) for i, t in enumerate(s.timestamps)}
            )
        freq = int(s.freq) if s.integer_time and s.freq is not None else s.freq
        meta = {
            "format": FORMAT,
            "grukit": grukit.__version__,
            "forecaster": dict(self.config_.__dict__),  # with the min_input it was fitted with
            "train": self.train_config.to_dict(),
            "series": {
                "ids": list(s.ids),
                "freq": freq,
                "timestamps": s.timestamps is not None and not s.integer_time,
                "periods": s.integer_time,
            },
        }

        def series(stage: Path) -> None:
            with open(stage / "series.npz", "wb") as f:
                np.savez(f, **arrays)

        model_folder.write(path, self.net_, "forecaster.json", meta, extra=series)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GRUForecaster:
        """A fitted forecaster from a folder written by :meth:`save` (no pickle anywhere)."""
        path = Path(path)
        with model_folder.reading(path, "forecaster.json", FORMAT, "forecaster") as (meta, weights):
            hyper = dict(meta["forecaster"])
            self = cls(hyper.pop("horizon"), hyper.pop("season"), train=meta["train"], **hyper)
            self.config_ = self.config  # saved with the min_input chosen at fit time
            self.net_ = model_folder.build(path, lambda: ForecastNet(self.config))
            self.net_.eval()
            saved = meta["series"]
            periods = saved.get("periods", False)  # absent in folders from before integer time
            freq = saved["freq"]
            if freq is not None and not isinstance(freq, int if periods else str):
                raise DataError(f"freq {freq!r} does not go with {'integer' if periods else 'date'} times")
            with np.load(path / "series.npz", allow_pickle=False) as z:
                n = len(saved["ids"])
                values = [z[f"v{i}"] for i in range(n)]
                if periods:
                    stamps = [z[f"p{i}"].astype(np.int64) for i in range(n)]
                elif saved["timestamps"]:
                    stamps = [z[f"t{i}"].astype("datetime64[ns]") for i in range(n)]
                else:
                    stamps = None
        self.series_ = SeriesSet(saved["ids"], values, stamps, freq)
        return self
