"""The estimator contract every application passes (DESIGN.md, STYLE.md rule 8), as one check.

    check_estimator(lambda **kw: GRUForecaster(4, train=FAST, **kw), data, predict)

``make(**hyper)`` builds an unfitted estimator; ``predict(est)`` returns an array. Checked:
unknown hyperparameters raise; using it before ``fit`` raises ``NotFittedError``; ``fit``
returns the estimator itself; fitted attributes end in ``_`` and exist only after ``fit``;
``save`` / ``load`` give identical predictions; the same seed gives the same predictions.
"""

from __future__ import annotations

import tempfile
from typing import Callable

import numpy as np

__all__ = ["check_estimator", "NotFittedError"]


class NotFittedError(RuntimeError):
    """An estimator used before ``fit`` (or ``load``)."""


def check_estimator(make: Callable, data, predict: Callable) -> None:
    try:
        make(no_such_option=1)
    except TypeError:
        pass
    else:
        raise AssertionError("an unknown hyperparameter was accepted")
    est = make()
    before = {k for k in vars(est) if k.endswith("_")}
    if before:
        raise AssertionError(f"fitted attributes exist before fit: {sorted(before)}")
    try:
        predict(est)
    except NotFittedError:
        pass
    else:
        raise AssertionError("predict before fit did not raise NotFittedError")
    if est.fit(data) is not est:
        raise AssertionError("fit did not return the estimator")
    fitted = {k for k in vars(est) if k.endswith("_")}
    if not fitted:
        raise AssertionError("fit set no fitted attributes (names ending in '_')")
    first = np.asarray(predict(est))
    with tempfile.TemporaryDirectory() as tmp:
        est.save(tmp)
        back = type(est).load(tmp)
    np.testing.assert_array_equal(np.asarray(predict(back)), first, err_msg="save/load changed predictions")
    again = make().fit(data)
    np.testing.assert_array_equal(
        np.asarray(predict(again)), first, err_msg="same seed, different predictions"
    )
