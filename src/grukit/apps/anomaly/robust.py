"""Robust normalisation of errors: median and scaled MAD, and the ensemble's combination.

A member's errors ``e`` become ``(e - median) / (1.4826 MAD)`` on the calibration data (1.4826
makes the MAD estimate the standard deviation of normal noise); the ensemble averages its members'
normalised errors and normalises the average the same way. Shapes: K members, n points or
sequences.
"""

from __future__ import annotations

import numpy as np

__all__ = ["center_and_spread", "combine"]


def center_and_spread(errors: np.ndarray) -> tuple[float, float]:
    """(n,) -> the median and 1.4826 MAD; where the MAD is 0 (over half the errors equal), the
    standard deviation, or 1.0 when that is 0 too."""
    med = float(np.median(errors))
    mad = float(np.median(np.abs(errors - med))) * 1.4826
    return med, mad if mad > 0 else (float(np.std(errors)) or 1.0)


def combine(errors: np.ndarray, member_center: np.ndarray, member_spread: np.ndarray) -> np.ndarray:
    """(K, n) member errors -> (n,): the mean of each member's robust z."""
    return ((errors - member_center[:, None]) / member_spread[:, None]).mean(0)
