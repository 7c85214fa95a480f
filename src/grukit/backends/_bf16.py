"""When the cpu backend's matrix products run in bfloat16.

``grukit.GRU(..., matmul_dtype=torch.bfloat16)``, or a float32 GRU under ``torch.autocast("cpu",
dtype=torch.bfloat16)``, asks for bfloat16 products with float32 accumulation (MKL's
``gemm_bf16bf16f32``): the input projection of every step and the recurrent product of each step
take bfloat16 operands (the weights converted once per call, the state at every step), while
gates, states, outputs and the backward stay float32. That pays where the CPU multiplies
bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere MKL emulates it at about its float32 rate
and only the precision would be lost, so the products stay float32 there. ``GRUKIT_BF16``
overrides the choice: ``auto`` (the default, as above), ``always`` (bfloat16 products on any
CPU, emulated where needed: for tests and accuracy measurements), ``off`` (never).

No Numba or BLAS is loaded by importing this module.
"""

from __future__ import annotations

import functools
import os

__all__ = ["ENV", "MODES", "hardware", "mode", "enabled"]

ENV = "GRUKIT_BF16"
MODES = ("auto", "always", "off")


@functools.lru_cache(maxsize=None)
def hardware() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16; Linux's
    ``/proc/cpuinfo`` says, elsewhere assumed not)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def mode() -> str:
    """``GRUKIT_BF16``'s value (``auto`` when unset); a ValueError naming the choices otherwise."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV} must be one of {', '.join(MODES)}, got {value!r}")
    return value


def enabled() -> bool:
    """Whether a request for bfloat16 products is honoured in this process now."""
    m = mode()
    if m == "off" or (m == "auto" and not hardware()):
        return False
    from grukit.backends import _blas

    return _blas.has_bf16_gemm()


# torch.compile and torch.export take the answer at trace time instead of tracing into the BLAS
# loader (what ``cpu.assume_constant_result`` sets, without importing dynamo)
enabled._dynamo_marked_constant = True
