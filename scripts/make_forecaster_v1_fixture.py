"""Write tests/fixtures/forecaster_v1/: a tiny GRUForecaster saved by the OLD code (before integer
time columns, when ``series.npz`` held only datetime64 ns timestamps), with the forecast that old
code made from it.

The test ``test_a_forecaster_saved_before_integer_time_still_loads`` loads the folder with the
current code and requires the same forecast and timestamps, so the extended format is checked
against files the old writer really wrote. The old code is that of commit 773a0ad. To reproduce:

    mkdir /tmp/old && git archive 773a0ad src | tar -x -C /tmp/old
    .venv/bin/python scripts/make_forecaster_v1_fixture.py /tmp/old

The script imports grukit from ``<old checkout>/src``. The data are two daily series generated
here with NumPy from a fixed seed; training is the old trainer's (one epoch, seeded). The folder
holds the old ``forecaster.json``, ``model.safetensors`` and ``series.npz`` as written, and
``expected.json``: the old forecast (floats written by ``json`` in their shortest round-trip
form, so exact) and its timestamps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def csv_text() -> str:
    """Two daily series of 30 points (a weekly pattern), ids a and b, in long format."""
    rng = np.random.default_rng(7)
    lines = ["id,date,value"]
    for sid, start in (("a", "2021-03-01"), ("b", "2021-04-15")):
        days = np.datetime64(start) + np.arange(30)
        values = 50 + 5 * np.sin(2 * np.pi * np.arange(30) / 7) + rng.normal(0, 0.5, 30)
        lines += [f"{sid},{d},{v:.3f}" for d, v in zip(days, values)]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path, help="a checkout of the old code (its src/ is imported)")
    p.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/forecaster_v1"
    )
    args = p.parse_args()
    sys.path.insert(0, str(args.old / "src"))
    import torch

    import grukit
    from grukit.apps.forecast import GRUForecaster
    from grukit.data.series import read_csv

    assert Path(grukit.__file__).is_relative_to(args.old), grukit.__file__
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "daily.csv"
        path.write_text(csv_text())
        series = read_csv(path)
    f = GRUForecaster(
        3,
        7,
        train={"epochs": 1, "batch_size": 16, "lr": 1e-2, "patience": None, "progress": "off", "seed": 0},
        hidden_size=4,
    )
    f.fit(series)
    f.save(args.out)
    fc = f.predict()
    expected = {
        "ids": fc.ids,
        "point": fc.point.tolist(),
        "timestamps": [[str(np.datetime64(t, "D")) for t in ts] for ts in fc.timestamps],
    }
    (args.out / "expected.json").write_text(json.dumps(expected))
    print(f"wrote {args.out} with grukit {grukit.__version__} from {grukit.__file__}")


if __name__ == "__main__":
    main()
