"""Classical baselines measured beside the GRU in the same run: pooled MFCC statistics with
logistic regression and with 1-nearest-neighbour (scikit-learn), and MFCC sequences compared by
dynamic time warping (1-NN, Numba).

Pooled MFCC (:func:`pooled_mfcc`): per recording, the 13 MFCCs ``c_t`` of ``Features`` (kind
``"mfcc"``, every other setting the ``FeatureConfig`` default) over its T valid frames and their
first differences ``d_t = c_{t+1} - c_t`` (plain differences, T - 1 of them; not librosa's
regression over +-2 frames), pooled into one row of 4 x 13 numbers

    [ mean_t c_t | std_t c_t | mean_t d_t | std_t d_t ]      std: population (divide by the count)

A recording with a single frame has no difference: its delta mean and std are 0. Recordings are
featurised in batches padded to the longest, and only each recording's own frames (the frame
counts ``Features`` returns) enter its statistics, so a row does not depend on its batch.

Classifiers (:func:`fit_baselines`), both on the standardised rows:

* ``"pooled MFCC + logistic regression"``: ``StandardScaler`` + multinomial
  ``LogisticRegression(max_iter=2000)``, C picked from :data:`C_GRID` by accuracy under
  stratified 5-fold cross-validation of the whole pipeline (the scaler is fitted inside each
  fold; fewer folds when a class has fewer than 5 recordings, none below 2 (C = 1)); ties go to
  the smallest C.
* ``"pooled MFCC + 1-NN"``: ``StandardScaler`` + ``KNeighborsClassifier(n_neighbors=1)``.
* ``"MFCC + DTW 1-NN"`` (only with ``dtw=True``): each recording's MFCC frames, every coefficient
  standardised by its mean and standard deviation over all training frames, labelled by the
  nearest training recording under DTW (below). About 10 s for FSDD's 300 x 2,700 on one core.

Dynamic time warping (:func:`dtw_distance`, :func:`dtw_1nn`): for sequences ``a`` (Ta, F) and
``b`` (Tb, F), with ``d(i, j) = ||a_i - b_j||_2``,

    D(0, 0) = d(0, 0)
    D(i, j) = d(i, j) + min(D(i-1, j), D(i, j-1), D(i-1, j-1))     (terms outside the grid: inf)
    dtw(a, b) = D(Ta-1, Tb-1) / (Ta + Tb)

The 1-NN search abandons a training sequence as soon as a whole row of D exceeds the best
normalised distance so far (every warping path crosses every row, and d >= 0), which returns the
same neighbour as the exhaustive search (ties: the first in training order).

Shapes: N recordings, S samples, T frames, F features per frame (13 MFCCs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from grukit.data.series import DataError

__all__ = [
    "pooled_mfcc",
    "mfcc_frames",
    "fit_baselines",
    "Baselines",
    "dtw_distance",
    "dtw_1nn",
    "BASELINE_NAMES",
    "DTW_NAME",
    "C_GRID",
    "N_MFCC",
]

N_MFCC = 13  # the FeatureConfig default, the usual count for speech
BASELINE_NAMES = ("pooled MFCC + logistic regression", "pooled MFCC + 1-NN")
DTW_NAME = "MFCC + DTW 1-NN"
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried by cross-validation
CV_FOLDS = 5


# -- features ------------------------------------------------------------------------------------


def _check_rate(rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise DataError(f"rate: expected a positive integer sample rate in Hz, got {rate!r}")
    return int(rate)


def _check_waves(waves, what: str) -> list[np.ndarray]:
    if isinstance(waves, np.ndarray) or not hasattr(waves, "__len__"):
        raise DataError(
            f"{what}: expected a list of 1-D arrays (one per recording), got {type(waves).__name__}"
        )
    out = []
    for i, w in enumerate(waves):
        w = np.asarray(w)
        if w.ndim != 1 or w.dtype.kind != "f":
            raise DataError(
                f"{what}[{i}]: expected a 1-D float array of samples (as read_audio gives), "
                f"got {w.ndim}-D {w.dtype}"
            )
        if not np.isfinite(w).all():
            raise DataError(f"{what}[{i}]: expected finite samples, got NaN or inf")
        out.append(w.astype(np.float32, copy=False))
    if not out:
        raise DataError(f"{what}: expected at least one recording, got none")
    return out


def _mfcc_batches(waves: list[np.ndarray], rate: int, batch: int, what: str):
    """Yield (indices, feats (B, T, F) float64, counts (B,)) over ``waves`` in batches of similar
    length (sorted by length, so little padding)."""
    from grukit.apps.speech.features import FeatureConfig, Features

    config = FeatureConfig(kind="mfcc", sample_rate=rate, n_mfcc=N_MFCC)
    lengths = np.array([len(w) for w in waves])  # (N,)
    short = np.flatnonzero(lengths < config.win_length)
    if short.size:
        i = int(short[0])
        raise DataError(
            f"{what}[{i}]: expected at least one {config.win_ms:g} ms frame "
            f"({config.win_length} samples at {rate} Hz), got {lengths[i]} samples"
        )
    features = Features(config).eval()
    order = np.argsort(lengths, kind="stable")
    with torch.no_grad():
        for a in range(0, len(order), batch):
            idx = order[a : a + batch]
            longest = int(lengths[idx].max())
            wave = torch.zeros(len(idx), longest, dtype=torch.float32)  # (B, S)
            for row, i in enumerate(idx):
                wave[row, : lengths[i]] = torch.from_numpy(waves[i])
            feats, counts = features(wave, torch.from_numpy(lengths[idx]).long())  # (B, T, F), (B,)
            yield idx, feats.double(), counts.long()


def mfcc_frames(waves, rate: int, batch: int = 256) -> list[np.ndarray]:
    """Each recording's 13 MFCCs over its own frames: a list of (T_i, 13) float64 arrays (the
    sequences :func:`dtw_1nn` compares)."""
    rate = _check_rate(rate)
    waves = _check_waves(waves, "waves")
    out: list = [None] * len(waves)
    for idx, feats, counts in _mfcc_batches(waves, rate, _check_batch(batch), "waves"):
        for row, i in enumerate(idx):
            out[i] = feats[row, : counts[row]].numpy().copy()  # (T_i, F)
    return out


def _check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise DataError(f"batch: expected a positive integer, got {batch!r}")
    return int(batch)


def pooled_mfcc(waves, rate: int, batch: int = 256) -> np.ndarray:
    """(N, 4 * 13) float64: per recording, the mean and standard deviation over its frames of 13
    MFCCs and of their first differences (module docstring), computed ``batch`` recordings at a
    time."""
    rate = _check_rate(rate)
    waves = _check_waves(waves, "waves")
    out = np.zeros((len(waves), 4 * N_MFCC))  # (N, 4F)
    for idx, c, counts in _mfcc_batches(waves, rate, _check_batch(batch), "waves"):
        T = c.shape[1]
        steps = torch.arange(T)  # (T,)
        mask = (steps[None] < counts[:, None]).double()[..., None]  # (B, T, 1)
        d = c[:, 1:] - c[:, :-1]  # (B, T-1, F)
        dmask = mask[:, 1:]  # (B, T-1, 1): d_t is valid when frame t+1 is
        parts = []
        for x, m in ((c, mask), (d, dmask)):
            n = m.sum(1).clamp(min=1.0)  # (B, 1); a lone frame: no difference, mean and std 0
            mean = (x * m).sum(1) / n  # (B, F)
            std = ((((x - mean[:, None]) ** 2) * m).sum(1) / n).sqrt()  # (B, F)
            parts += [mean, std]
        out[idx] = torch.cat(parts, 1).numpy()  # (B, 4F)
    return out


# -- classifiers ---------------------------------------------------------------------------------


@dataclass
class Baselines:
    """Fitted baselines (see :func:`fit_baselines`): ``models[name]`` is a scikit-learn pipeline
    from :func:`pooled_mfcc` rows to labels; with DTW, the standardised training sequences."""

    rate: int
    models: dict = field(repr=False)
    logistic_C: float  # the C cross-validation picked
    names: tuple = BASELINE_NAMES
    dtw_train: list | None = field(default=None, repr=False)  # [(T_i, F)] standardised MFCC frames
    dtw_labels: list | None = field(default=None, repr=False)
    frame_mean: np.ndarray | None = field(default=None, repr=False)  # (F,) over all training frames
    frame_std: np.ndarray | None = field(default=None, repr=False)  # (F,)

    def predict(self, waves) -> dict[str, list[str]]:
        """Per baseline, the predicted label of every recording (1-D arrays at ``rate``)."""
        from threadpoolctl import threadpool_limits

        X = pooled_mfcc(waves, self.rate)  # (N, 4F)
        with threadpool_limits(1):  # as in fitting
            out = {
                name: [str(p) for p in self.models[name].predict(X)]
                for name in self.names
                if name in self.models
            }
        if DTW_NAME in self.names:
            seqs = [(c - self.frame_mean) / self.frame_std for c in mfcc_frames(waves, self.rate)]
            out[DTW_NAME] = dtw_1nn(self.dtw_train, self.dtw_labels, seqs)
        return out

    def accuracy(self, waves, labels) -> dict[str, float]:
        """Per baseline, the fraction of recordings whose predicted label equals ``labels``."""
        labels = _check_labels(labels, len(waves))
        return {
            name: float(np.mean([p == t for p, t in zip(pred, labels)]))
            for name, pred in self.predict(waves).items()
        }


def _check_labels(labels, n: int) -> list[str]:
    labels = list(labels)
    if len(labels) != n:
        raise DataError(f"labels: expected one label per recording ({n}), got {len(labels)}")
    for i, y in enumerate(labels):
        if not isinstance(y, str):
            raise DataError(f"labels[{i}]: expected a string label, got {type(y).__name__} {y!r}")
    return labels


def fit_baselines(train_waves, train_labels, rate: int, seed: int = 0, *, dtw: bool = False) -> Baselines:
    """Both pooled-MFCC baselines fitted on the recordings ``train_waves`` (1-D arrays at ``rate``)
    and their string labels, and with ``dtw`` the MFCC + DTW 1-NN as a third; ``seed`` shuffles
    the cross-validation folds."""
    from grukit._extras import require

    require("sklearn", "apps", what="the speech baselines")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rate = _check_rate(rate)
    waves = _check_waves(train_waves, "train_waves")
    y = np.array(_check_labels(train_labels, len(waves)), dtype=object)  # (N,)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"train_labels: expected at least 2 classes, got {len(classes)} ({list(classes)})")
    X = pooled_mfcc(waves, rate)  # (N, 4F)

    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = min(CV_FOLDS, int(counts.min()))
    # one BLAS thread: the products are small (N x 52 by 52 x classes), and threads waiting for
    # a core made FSDD's cross-validation take 90 s instead of 3 beside other jobs on 2 cores
    with threadpool_limits(1):
        if folds >= 2:
            search = GridSearchCV(
                logistic,
                {"logisticregression__C": list(C_GRID)},
                scoring="accuracy",
                cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                n_jobs=1,
            )
            search.fit(X, y)
            C = float(search.best_params_["logisticregression__C"])
            logistic = search.best_estimator_
        else:  # a class with a single recording: nothing to cross-validate
            C = 1.0
            logistic.set_params(logisticregression__C=C).fit(X, y)
        nearest = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)).fit(X, y)
    base = Baselines(rate=rate, models=dict(zip(BASELINE_NAMES, (logistic, nearest))), logistic_C=C)
    if dtw:
        frames = mfcc_frames(waves, rate)
        every = np.concatenate(frames)  # (sum T, F)
        std = every.std(0)  # (F,); a coefficient constant over the training frames is left unscaled
        base.frame_mean, base.frame_std = every.mean(0), np.where(std > 0, std, 1.0)  # (F,), (F,)
        base.dtw_train = [(c - base.frame_mean) / base.frame_std for c in frames]
        base.dtw_labels = list(y)
        base.names = BASELINE_NAMES + (DTW_NAME,)
    return base


# -- dynamic time warping ------------------------------------------------------------------------

_dtw_kernels = None  # (cost, nearest), compiled on first use


def _kernels():
    """The Numba DTW kernels, compiled once per process."""
    global _dtw_kernels
    if _dtw_kernels is None:
        import numba

        @numba.njit(nogil=True, cache=False)
        def cost(a, b, limit, prev, cur):
            # D(Ta-1, Tb-1) / (Ta + Tb), or inf as soon as a whole row of D / (Ta + Tb) > limit;
            # prev, cur: (>= Tb,) work rows
            Ta, Tb, F = a.shape[0], b.shape[0], a.shape[1]
            n = Ta + Tb
            for i in range(Ta):
                row_min = np.inf
                for j in range(Tb):
                    s = 0.0
                    for k in range(F):
                        e = a[i, k] - b[j, k]
                        s += e * e
                    if i == 0:
                        best = 0.0 if j == 0 else cur[j - 1]
                    elif j == 0:
                        best = prev[0]
                    else:
                        best = min(prev[j], cur[j - 1], prev[j - 1])
                    cur[j] = np.sqrt(s) + best
                    row_min = min(row_min, cur[j])
                if row_min / n > limit:
                    return np.inf
                prev, cur = cur, prev
            return prev[Tb - 1] / n

        @numba.njit(nogil=True, cache=False)
        def nearest(train, train_off, test, test_off):
            # (Q,) index of each test sequence's nearest training sequence (the first on ties)
            Q, R = test_off.shape[0] - 1, train_off.shape[0] - 1
            longest = 0
            for r in range(R):
                longest = max(longest, train_off[r + 1] - train_off[r])
            prev, cur = np.empty(longest), np.empty(longest)
            out = np.empty(Q, dtype=np.int64)
            for q in range(Q):
                a = test[test_off[q] : test_off[q + 1]]
                best, arg = np.inf, 0
                for r in range(R):
                    c = cost(a, train[train_off[r] : train_off[r + 1]], best, prev, cur)
                    if c < best:
                        best, arg = c, r
                out[q] = arg
            return out

        _dtw_kernels = (cost, nearest)
    return _dtw_kernels


def _check_seq(x, what: str, F: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind not in "fiu":
        raise DataError(f"{what}: expected a 2-D numeric array (frames, features), got {x.ndim}-D {x.dtype}")
    if x.shape[0] < 1:
        raise DataError(f"{what}: expected at least one frame, got 0")
    if F is not None and x.shape[1] != F:
        raise DataError(f"{what}: expected {F} features per frame, got {x.shape[1]}")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: expected finite values, got NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float64)


def dtw_distance(a, b) -> float:
    """The DTW distance between ``a`` (Ta, F) and ``b`` (Tb, F): Euclidean frame distance, steps
    (1, 0), (0, 1), (1, 1), the path's cost divided by Ta + Tb (module docstring)."""
    a = _check_seq(a, "a")
    b = _check_seq(b, "b", a.shape[1])
    cost, _ = _kernels()
    return float(cost(a, b, np.inf, np.empty(b.shape[0]), np.empty(b.shape[0])))


def _concat(seqs, what: str, F: int | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(seqs, np.ndarray) or not hasattr(seqs, "__len__") or len(seqs) == 0:
        raise DataError(f"{what}: expected a non-empty list of (frames, features) arrays")
    checked = []
    for i, s in enumerate(seqs):
        checked.append(_check_seq(s, f"{what}[{i}]", F))
        F = checked[-1].shape[1]
    offsets = np.zeros(len(checked) + 1, dtype=np.int64)  # (N+1,)
    offsets[1:] = np.cumsum([len(s) for s in checked])
    return np.ascontiguousarray(np.concatenate(checked)), offsets  # (sum T, F), (N+1,)


def dtw_1nn(train_feats, train_labels, test_feats) -> list[str]:
    """The label of each test sequence's nearest training sequence under :func:`dtw_distance`
    (sequences: (T_i, F) arrays, e.g. from :func:`mfcc_frames`)."""
    train, train_off = _concat(train_feats, "train_feats", None)
    labels = _check_labels(train_labels, len(train_off) - 1)
    test, test_off = _concat(test_feats, "test_feats", train.shape[1])
    _, nearest = _kernels()
    return [labels[i] for i in nearest(train, train_off, test, test_off)]
