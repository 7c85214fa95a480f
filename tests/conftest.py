import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Keras 3 runs on PyTorch in the tests (no TensorFlow): set before anything imports keras
os.environ.setdefault("KERAS_BACKEND", "torch")

# hypothesis (tests/test_hypothesis_*.py, tests/test_fuzz_*.py): "default" is derandomized and small,
# the same examples every run and well under a minute in all; `make fuzz` selects "fuzz"
# (FUZZ_EXAMPLES examples per test, 1000 unless set).
# the autouse seed fixture is function-scoped: each example seeds torch itself where it draws
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "default",
    derandomize=True,
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
    deadline=None,
    database=None,
    suppress_health_check=_SUPPRESS,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tols(dtype: torch.dtype) -> dict:
    """Tolerances for comparing two correct implementations in ``dtype``."""
    return {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-5)}[dtype]


@pytest.fixture(scope="session")
def fake_fsdd(tmp_path_factory):
    """An FSDD-shaped folder (``recordings/{digit}_{speaker}_{index}.wav``, 8 kHz): each digit a
    tone of its own pitch, speakers ann and theo, recordings 0-6 (0-4: the official test set)."""
    import numpy as np

    sf = pytest.importorskip("soundfile", reason="the speech extra (soundfile) is part of the test extra")
    root = tmp_path_factory.mktemp("fsdd") / "recordings"
    root.mkdir()
    rng = np.random.default_rng(3)
    for spk in ("ann", "theo"):
        for digit in range(10):
            for k in range(7):
                t = np.arange(int(rng.uniform(0.2, 0.3) * 8000)) / 8000
                w = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * (300 + 180 * digit) * t + rng.uniform(0, 6))
                sf.write(
                    root / f"{digit}_{spk}_{k}.wav",
                    (w + 0.01 * rng.standard_normal(len(t))).astype(np.float32),
                    8000,
                )
    return root.parent


def run_script(path, source: str, **env: str) -> str:
    """Run ``source`` as a Python script at ``path`` in a fresh interpreter with ``env`` added
    to the environment (for settings read once per process, such as ``OMP_THREAD_LIMIT``);
    assert it exits 0 and return its standard output, stripped."""
    import subprocess
    import sys

    path.write_text(source)
    proc = subprocess.run(
        [sys.executable, str(path)], env=dict(os.environ, **env), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()
