"""A detector over the whole benchmark, its three scores, and the published detectors beside it.

:func:`detector_scores` feeds every file to an online detector record by record;
:func:`published_raw_scores` reads a published detector's raw scores from NAB's ``results``
folder (where the data has them); :func:`benchmark` scores either under every profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from grukit.apps.nab.detectors import SIMPLE, OnlineDetector, run_online
from grukit.apps.nab.discord import Discord
from grukit.apps.nab.gru import GRUDetector
from grukit.apps.nab.scoring import PROFILES, CorpusScore, score_corpus
from grukit.data.nab import NABCorpus
from grukit.data.series import DataError

__all__ = ["DETECTORS", "detector_scores", "published_raw_scores", "benchmark"]

# what `grukit anomaly nab --detector` runs, by name
DETECTORS = {"gru": GRUDetector, **SIMPLE, "discord": Discord}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def detector_scores(
    corpus: NABCorpus,
    detector: OnlineDetector,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    workers: int = 1,
) -> list[np.ndarray]:
    """Every file's scores, (n,) each, in ``corpus.files`` order; ``progress(k, total, name)``
    as files finish. ``workers`` > 1 scores files in that many processes at once (the files
    are independent; each process runs torch on one thread, so the scores do not depend on
    how many there are; ``detector`` must pickle). The processes are spawned, so a script that
    asks for them must call this under ``if __name__ == "__main__":``, as with any
    ``multiprocessing`` code."""
    total = len(corpus.files)
    if workers <= 1:
        out = []
        for k, f in enumerate(corpus.files):
            out.append(run_online(detector, f.values))
            if progress is not None:
                progress(k + 1, total, f.name)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no forked copy of torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_one_thread) as pool:
        futures = [pool.submit(run_online, detector, f.values) for f in corpus.files]
        for k, (f, fut) in enumerate(zip(corpus.files, futures)):
            fut.result()
            if progress is not None:
                progress(k + 1, total, f.name)
        return [fut.result() for fut in futures]


def published_raw_scores(corpus: NABCorpus, name: str) -> list[np.ndarray] | None:
    """A published detector's raw scores (``results/<name>/<category>/<name>_<file>.csv``,
    column ``anomaly_score``) for every file, or None when the folder does not hold them."""
    import pandas as pd

    root = Path(corpus.folder) / "results" / name
    if not root.is_dir():
        return None
    out = []
    for f in corpus.files:
        category, base = f.name.split("/")
        path = root / category / f"{name}_{base}"
        if not path.is_file():
            raise DataError(f"{root} lacks {category}/{name}_{base}")
        scores = pd.read_csv(path)["anomaly_score"].to_numpy(dtype=np.float64)
        if len(scores) != len(f.values):
            raise DataError(f"{path} has {len(scores)} rows, its data file {len(f.values)}")
        out.append(scores)
    return out


def benchmark(corpus: NABCorpus, scores: list[np.ndarray]) -> dict[str, CorpusScore]:
    """The NAB score of ``scores`` (one array per file) under every profile, each at its own best
    threshold."""
    return {name: score_corpus(corpus.files, scores, profile) for name, profile in PROFILES.items()}
