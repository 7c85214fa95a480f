"""Write tests/fixtures/golden_onnx_gru.json: GRU outputs computed by ONNX's reference evaluator.

An oracle not written in this repository: ``onnx.reference.ReferenceEvaluator`` runs the ONNX
``GRU`` operator (gate order z, r, h; ``Ht = (1 - z) * h + z * Ht-1``) on seeded random weights, for
``linear_before_reset`` 0 (reset before the recurrent product: the spec's formulation) and 1
(PyTorch's), forward, reverse and bidirectional, with and without an initial state. The fixture
stores inputs, ONNX-layout weights and outputs in float64, so tests need neither onnx nor this
script. Rerun with::

    pip install 'grukit[golden]' && python scripts/make_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden_onnx_gru.json"

CASES = [
    # name, T, N, I, H, direction, linear_before_reset, with initial_h
    ("before_forward", 5, 2, 3, 4, "forward", 0, False),
    ("before_reverse_h0", 4, 3, 2, 3, "reverse", 0, True),
    ("before_bidirectional_h0", 6, 2, 3, 4, "bidirectional", 0, True),
    ("after_forward_h0", 5, 2, 3, 4, "forward", 1, True),
    ("after_bidirectional", 4, 3, 2, 3, "bidirectional", 1, False),
]


def run_case(rng, T, N, I, H, direction, lbr, with_h0):
    D = 2 if direction == "bidirectional" else 1
    X = rng.standard_normal((T, N, I))
    W = rng.uniform(-0.8, 0.8, (D, 3 * H, I))
    R = rng.uniform(-0.8, 0.8, (D, 3 * H, H))
    B = rng.uniform(-0.5, 0.5, (D, 6 * H))
    h0 = rng.standard_normal((D, N, H)) if with_h0 else None
    inputs = ["X", "W", "R", "B", "", "initial_h" if with_h0 else ""]
    while inputs[-1] == "":
        inputs.pop()
    node = helper.make_node(
        "GRU", inputs, ["Y", "Y_h"], hidden_size=H, direction=direction, linear_before_reset=lbr
    )
    d = TensorProto.DOUBLE
    graph_inputs = [
        helper.make_tensor_value_info("X", d, X.shape),
        helper.make_tensor_value_info("W", d, W.shape),
        helper.make_tensor_value_info("R", d, R.shape),
        helper.make_tensor_value_info("B", d, B.shape),
    ]
    feeds = {"X": X, "W": W, "R": R, "B": B}
    if with_h0:
        graph_inputs.append(helper.make_tensor_value_info("initial_h", d, h0.shape))
        feeds["initial_h"] = h0
    graph = helper.make_graph(
        [node],
        "gru",
        graph_inputs,
        [
            helper.make_tensor_value_info("Y", d, None),
            helper.make_tensor_value_info("Y_h", d, None),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    Y, Y_h = ReferenceEvaluator(model).run(None, feeds)
    case = {"X": X, "W": W, "R": R, "B": B, "Y": Y, "Y_h": Y_h}
    if with_h0:
        case["initial_h"] = h0
    return {k: v.tolist() for k, v in case.items()}


def main() -> None:
    rng = np.random.default_rng(20261125)
    cases = {}
    for name, T, N, I, H, direction, lbr, with_h0 in CASES:
        case = run_case(rng, T, N, I, H, direction, lbr, with_h0)
        case.update(direction=direction, linear_before_reset=lbr, hidden_size=H)
        cases[name] = case
    payload = {
        "generator": "scripts/make_golden.py",
        "oracle": f"onnx.reference.ReferenceEvaluator, onnx {onnx.__version__}, opset 14",
        "layout": "ONNX: W [D, 3H, I], R [D, 3H, H], B [D, 6H] = [Wb, Rb]; gates z, r, h; "
        "X [T, N, I]; Y [T, D, N, H]; Y_h [D, N, H]",
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
