import os

import pytest
import torch

# Keras 3 runs on PyTorch in the tests (no TensorFlow): set before anything imports keras
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tols(dtype: torch.dtype) -> dict:
    """Tolerances for comparing two correct implementations in ``dtype``."""
    return {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-4, atol=1e-5)}[dtype]
