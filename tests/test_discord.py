"""The matrix-profile discord baseline: stumpy's profile against brute force, the per-point
scores, a hand-made signal with one obvious discord, the calibrated detector, bad input."""

import sys

import numpy as np
import pytest

from grukit._extras import MissingDependency
from grukit.apps.anomaly.discord import DiscordDetector, discord_scores, matrix_profile
from grukit.data.series import DataError

pytest.importorskip("stumpy")


def _zn(s):
    return (s - s.mean()) / s.std()


def _brute_profile(x, m, ref=None):
    """Nearest z-normalised Euclidean distance of each subsequence of ``x``: to ``ref``'s, or to
    ``x``'s own outside the exclusion zone |i - j| <= ceil(m / 4) (the matrix-profile literature's
    trivial matches)."""
    subs = np.array([_zn(x[i : i + m]) for i in range(len(x) - m + 1)])
    others = subs if ref is None else np.array([_zn(ref[j : j + m]) for j in range(len(ref) - m + 1)])
    d = np.sqrt(((subs[:, None, :] - others[None, :, :]) ** 2).sum(-1))  # (L, L')
    if ref is None:
        i = np.arange(len(subs))
        d[np.abs(i[:, None] - i[None, :]) <= int(np.ceil(m / 4))] = np.inf
    return d.min(1)


def _signal(n, seed, period=25):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period) + 0.1 * rng.standard_normal(n)


def test_the_profile_is_the_nearest_z_normalised_distance():
    x, ref = _signal(240, 0), _signal(300, 1)
    np.testing.assert_allclose(matrix_profile(x, 12, ref), _brute_profile(x, 12, ref), rtol=0, atol=1e-6)
    np.testing.assert_allclose(matrix_profile(x, 12), _brute_profile(x, 12), rtol=0, atol=1e-6)
    two = np.c_[x, x[::-1]]  # channels joined one by one, profiles averaged
    expected = (_brute_profile(x, 12, ref) + _brute_profile(x[::-1], 12, ref[::-1])) / 2
    np.testing.assert_allclose(matrix_profile(two, 12, np.c_[ref, ref[::-1]]), expected, rtol=0, atol=1e-6)


def test_a_point_scores_the_mean_profile_of_its_windows():
    x, m = _signal(200, 2), 10
    p = _brute_profile(x, m)
    L = len(p)
    expected = np.empty(len(x))
    for u in range(len(x)):
        ws = [i for i in range(L) if i <= u < i + m]
        if len(ws) < m:  # near the ends: the first or last m windows, as many as inside
            ws = list(range(m)) if ws[0] == 0 else list(range(L - m, L))
        expected[u] = p[ws].mean()
    np.testing.assert_allclose(discord_scores(x, m), expected, rtol=0, atol=1e-6)


def test_one_obvious_discord_is_found():
    """A periodic signal with one cycle replaced by a faster oscillation: the self-join's highest
    profile value and the highest point score fall on it; the detector fitted on clean data flags
    it and almost nothing else."""
    x = _signal(3000, 3, period=50)
    t = np.arange(1500, 1550)
    x[t] = np.sin(2 * np.pi * t / 12)
    p = matrix_profile(x, 50)
    assert 1450 <= p.argmax() <= 1550
    assert 1450 <= discord_scores(x, 50).argmax() < 1600
    det = DiscordDetector(50).fit(_signal(2000, 4, period=50))
    flags = det.predict(x)
    assert flags[1500:1550].all()
    assert flags.sum() < 0.03 * len(x) + 150  # the discord's windows and about the false-alarm rate


def test_bad_input_is_named(monkeypatch):
    with pytest.raises(DataError, match="the discord window must be an integer of at least 3 points, got 2"):
        matrix_profile(_signal(100, 0), 2)
    with pytest.raises(
        DataError, match="a discord window of 60 points needs at least 120 points in the signal; got 100"
    ):
        matrix_profile(_signal(100, 0), 60)
    with pytest.raises(DataError, match="the reference has 2 channel"):
        matrix_profile(_signal(100, 0), 10, np.zeros((50, 2)))
    with pytest.raises(DataError, match="needs finite values"):
        matrix_profile(np.r_[_signal(100, 0), np.nan], 10)
    with pytest.raises(
        DataError,
        match="the discord baseline with a window of 50 needs at least 200 points of normal data; got 199",
    ):
        DiscordDetector(50).fit(_signal(199, 0))
    monkeypatch.setitem(sys.modules, "stumpy", None)
    with pytest.raises(MissingDependency, match=r"needs stumpy: pip install 'grukit\[apps\]'"):
        matrix_profile(_signal(100, 0), 10)
