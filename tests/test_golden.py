"""Golden values from ONNX's reference evaluator, an implementation not written in this repository.

The fixture is made by scripts/make_golden.py (see its docstring). The ONNX -> grukit mapping is
written out here by hand rather than imported, so the test does not depend on grukit's converters:
ONNX stacks gate blocks z, r, h; grukit stacks r, z, n.
"""

import json
from pathlib import Path

import pytest
import torch

import grukit

from conftest import tols

F64 = torch.float64
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "golden_onnx_gru.json").read_text())


def zrh_to_rzn(m: torch.Tensor, H: int) -> torch.Tensor:
    z, r, h = m.split(H, 0)
    return torch.cat([r, z, h], 0)


@pytest.mark.parametrize("name", sorted(FIXTURE["cases"]))
def test_matches_onnx_reference_evaluator(name):
    case = FIXTURE["cases"][name]
    t = {k: torch.tensor(v, dtype=F64) for k, v in case.items() if isinstance(v, list)}
    H, D = case["hidden_size"], t["W"].shape[0]
    T, N, I = t["X"].shape
    reverse_only = case["direction"] == "reverse"  # grukit's reverse half of a bidirectional GRU
    gru = grukit.GRU(
        I, H, bidirectional=D == 2 or reverse_only, dtype=F64, reset_after=bool(case["linear_before_reset"])
    )
    suffixes = ["_reverse"] if reverse_only else ["", "_reverse"][:D]
    with torch.no_grad():
        for d, suffix in enumerate(suffixes):
            getattr(gru, "weight_ih_l0" + suffix).copy_(zrh_to_rzn(t["W"][d], H))
            getattr(gru, "weight_hh_l0" + suffix).copy_(zrh_to_rzn(t["R"][d], H))
            getattr(gru, "bias_ih_l0" + suffix).copy_(zrh_to_rzn(t["B"][d, : 3 * H], H))
            getattr(gru, "bias_hh_l0" + suffix).copy_(zrh_to_rzn(t["B"][d, 3 * H :], H))
    h0 = t.get("initial_h")
    if reverse_only and h0 is not None:
        h0 = torch.cat([torch.zeros_like(h0), h0])  # the unused forward half starts at zero
    out, h_n = gru(t["X"], h0)
    if reverse_only:
        out, h_n = out[..., H:], h_n[1:]
    Y = out.reshape(T, N, len(suffixes), H).transpose(1, 2)  # (T, D, N, H) as ONNX
    torch.testing.assert_close(Y, t["Y"], **tols(F64))
    torch.testing.assert_close(h_n, t["Y_h"], **tols(F64))
