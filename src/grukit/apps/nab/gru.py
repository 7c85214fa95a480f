"""grukit's online GRU detector for NAB: learn the probationary period, then predict each next
record, and score how unusual the recent prediction errors are.

Per file of n records, P = the probationary length (``scoring.probation_length(n)``):

1. Records before P are only stored (scored 0: NAB does not score them). At record P the
   values are standardised by the probationary records' mean and standard deviation, and a GRU
   (one layer, ``hidden`` units, a linear head) is trained to predict the next standardised
   value from the previous ones (windows of ``window`` records, mean squared error, Adam).
2. From then on the GRU runs as a stream (``grukit.GRU.stream``): before record t arrives it has
   predicted ``mu_t`` (and, with ``spread``, a standard deviation ``sigma_t``: the head then
   has two outputs, trained by the Gaussian negative log-likelihood) from records up to t-1;
   the record's error is ``|x_t - mu_t| / sigma_t``.
3. The errors are scored by ``detectors.ErrorScorer``: each error's rank among all earlier ones
   (the model's errors on the probationary records seed them) as a conformal p-value on a log
   scale. For each window length m in ``novelty`` (default (1, 4); empty: the error alone) the
   record is also scored by how new the last m standardised values are
   (``detectors.WindowNovelty``: the distance to the nearest earlier window, not normalised),
   ranked the same way (``detectors.NoveltyScores``, seeded by the probationary records' second
   half: the first windows have little before them); the record's score is the mean of these
   ranks, i.e. the geometric mean of the p-values on the same log scale. Only the first alarm of
   a burst is reported (``detectors.Quiet``). Over NAB the novelty scores alone do better than
   this mean (docs/anomaly.md).
4. Every ``adapt_every`` records the GRU takes ``adapt_steps`` more training steps on the last
   ``recent`` records (NAB allows a detector to keep learning), and its state is rebuilt over
   the last ``window`` records with the new weights.

Every step sees the records up to the one it scores and nothing after it
(``detectors.run_online`` drives it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grukit.apps.nab.detectors import NOVELTY, ErrorScorer, NoveltyScores, Quiet
from grukit.apps.nab.scoring import probation_length

__all__ = ["GRUConfig", "GRUDetector"]


@dataclass(frozen=True)
class GRUConfig:
    hidden: int = 32
    window: int = 64  # training windows and the state rebuilt after adapting
    train_steps: int = 150
    batch: int = 32
    lr: float = 1e-2
    adapt_every: int = 250
    adapt_steps: int = 5
    recent: int = 1000  # the records adapting trains on
    score: str = "rank"  # how errors are scored: detectors.ErrorScorer's method
    short: int = 1
    history: int = 8640  # (the "gaussian" method's window)
    quiet: int = 100
    # predict each record's spread too, errors in units of it: measured worse over NAB
    # (standard 33.3 against 49.3 without: docs/anomaly.md)
    spread: bool = False
    # the windows of the novelty scores averaged with the error's (empty: the error's alone);
    # measured over NAB (docs/anomaly.md)
    novelty: tuple[int, ...] = NOVELTY
    seed: int = 0


class GRUDetector:
    name = "gru"

    def __init__(self, config: GRUConfig | None = None, **changes) -> None:
        base = config or GRUConfig()
        self.config = GRUConfig(**{**base.__dict__, **changes})

    def start(self, n: int) -> _State:
        return _State(self.config, n)


class _State:
    def __init__(self, cfg: GRUConfig, n: int) -> None:
        self.cfg = cfg
        self.P = max(probation_length(n), cfg.window + 2)
        self.values: list[float] = []  # raw values seen so far

    # -- the model -----------------------------------------------------------------------------

    def _build(self):
        import torch

        from grukit import GRU

        torch.manual_seed(self.cfg.seed)
        gru = GRU(1, self.cfg.hidden, batch_first=True)
        head = torch.nn.Linear(self.cfg.hidden, 2 if self.cfg.spread else 1)
        self.params = list(gru.parameters()) + list(head.parameters())
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.gru, self.head = gru, head

    def _train(self, z: np.ndarray, steps: int) -> None:
        """``steps`` Adam steps on random windows of the standardised values ``z``."""
        import torch

        L = min(self.cfg.window, len(z) - 1)
        starts = len(z) - L
        rng = np.random.default_rng(self.cfg.seed + len(self.values))
        series = torch.from_numpy(z.astype(np.float32))
        self.gru.train()
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, starts, self.cfg.batch))
            rows = idx[:, None] + torch.arange(L + 1)  # (B, L+1)
            seq = series[rows].unsqueeze(-1)  # (B, L+1, 1)
            out, _ = self.gru(seq[:, :-1])
            pred = self.head(out)  # (B, L, 1 or 2)
            if self.cfg.spread:  # Gaussian negative log-likelihood, log sigma clamped
                log_sigma = pred[..., 1:].clamp(-6.0, 6.0)
                loss = (0.5 * ((seq[:, 1:] - pred[..., :1]) * torch.exp(-log_sigma)) ** 2 + log_sigma).mean()
            else:
                loss = torch.nn.functional.mse_loss(pred, seq[:, 1:])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.gru.eval()
        self.w_head = self.head.weight.detach().numpy().astype(np.float64).T  # (H, 1 or 2)
        self.b_head = self.head.bias.detach().numpy().astype(np.float64)  # (1 or 2,)

    def _prime(self, z: np.ndarray) -> np.ndarray:
        """Run a fresh stream over ``z``; returns the predictions it made for z[1:] and leaves
        ``self.mu``, the prediction for the next record."""
        import torch

        self.stream = self.gru.stream(1)
        with torch.no_grad():
            h = self.stream(torch.from_numpy(z.astype(np.float32)).view(1, -1, 1))[0, :, :].numpy()
        pred = h.astype(np.float64) @ self.w_head + self.b_head  # (len(z), 1 or 2)
        self.mu, self.sigma = self._moments(pred[-1])
        mu, sigma = pred[:-1, 0], np.exp(np.clip(pred[:-1, 1], -6, 6)) if self.cfg.spread else 1.0
        return np.abs(z[1:] - mu) / sigma  # the errors the stream made on z[1:]

    def _moments(self, p: np.ndarray) -> tuple[float, float]:
        return float(p[0]), float(np.exp(np.clip(p[1], -6, 6))) if self.cfg.spread else 1.0

    def _advance(self, zt: float) -> None:
        import torch

        with torch.no_grad():
            h = self.stream(torch.tensor([[[zt]]], dtype=torch.float32))[0, 0].numpy()
        self.mu, self.sigma = self._moments(h.astype(np.float64) @ self.w_head + self.b_head)

    def _scorer(self, seed: list[float]) -> ErrorScorer:
        """A scorer of the errors or of one novelty score, without quieting: ``step`` quietens
        the record's combined score (``Quiet`` after a scorer equals the scorer's own)."""
        return ErrorScorer(self.cfg.short, self.cfg.history, 0, seed=seed, method=self.cfg.score)

    # -- the detector --------------------------------------------------------------------------

    def step(self, value: float) -> float:
        self.values.append(value)
        t = len(self.values)
        if t < self.P:
            return 0.0
        if t == self.P:  # the probationary period is complete: learn it
            v = np.asarray(self.values)
            self.mean, self.scale = float(v.mean()), float(v.std()) or 1.0
            z = (v - self.mean) / self.scale
            self._build()
            self._train(z, self.cfg.train_steps)
            windows = self.cfg.novelty
            self.scorer = self._scorer(list(self._prime(z)))
            self.novelty = NoveltyScores(windows, z, self._scorer) if windows else None
            self.quiet = Quiet(self.cfg.quiet)
            return 0.0
        zt = (value - self.mean) / self.scale
        score = self.scorer.update(abs(zt - self.mu) / self.sigma)
        if self.novelty is not None:  # the mean of the error's and the novelties' scores
            score = (score + self.novelty.total(zt)) / (1 + len(self.novelty.parts))
        score = self.quiet(score)
        if (t - self.P) % self.cfg.adapt_every == 0 and self.cfg.adapt_steps:
            recent = (np.asarray(self.values[-self.cfg.recent :]) - self.mean) / self.scale
            self._train(recent, self.cfg.adapt_steps)
            self._prime(recent[-self.cfg.window :])
        else:
            self._advance(zt)
        return score
