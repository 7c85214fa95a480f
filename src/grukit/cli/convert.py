"""``grukit convert IN OUT``: move a GRU's weights between formats, exactly.

Formats come from the extensions: .safetensors (grukit's weights + configuration), .pt/.pth (a
torch.nn.GRU state dict, loaded with weights_only=True), .onnx (standard ONNX GRU nodes), .keras
(a Keras 3 model of GRU / Bidirectional(GRU) layers). The result is written to a temporary file,
read back by its own framework (torch.nn.GRU, ONNX Runtime, Keras, grukit) and compared with the
source on a random batch; only then does it replace OUT. An existing OUT is kept unless --force.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from grukit.cli._errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert GRU weights between grukit, PyTorch, ONNX and Keras files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="source file (.safetensors, .pt, .pth, .onnx, .keras)")
    p.add_argument("output", metavar="OUT", help="destination file (same extensions)")
    p.add_argument(
        "--reset-after",
        choices=["true", "false"],
        default=None,
        help="the formulation, for sources that do not record it (a bare state dict; "
        ".pt defaults to true, torch.nn.GRU's only formulation)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for .onnx output")
    p.add_argument(
        "--sequence-lens",
        action="store_true",
        help="ONNX output: add a sequence_lens input for variable-length batches",
    )
    p.add_argument(
        "--initial-state", action="store_true", help="ONNX output: add an hx input for the initial state"
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def _describe(model) -> str:
    n = sum(p.numel() for p in model.parameters())
    dtype = str(model.weight_ih_l0.dtype).removeprefix("torch.")
    return f"{model!r}, {dtype}, {n:,} parameters"


def run(args: argparse.Namespace) -> int:
    import torch

    from grukit.convert import read_model, verify_file, write_model
    from grukit.convert.files import FORMATS, format_of

    src, dst = Path(args.input), Path(args.output)
    in_fmt, out_fmt = format_of(src), format_of(dst)
    if not src.is_file():
        raise UserError(f"no such file: {src}")
    if dst.exists() and not args.force:
        raise UserError(f"{dst} exists; pass --force to replace it")
    if not dst.parent.is_dir():
        raise UserError(f"no such folder: {dst.parent}")
    if dst.resolve() == src.resolve():
        raise UserError("IN and OUT are the same file")
    onnx_opts = {
        k: v
        for k, v in (
            ("opset", args.opset),
            ("sequence_lens", args.sequence_lens or None),
            ("initial_state", args.initial_state or None),
        )
        if v is not None
    }
    if onnx_opts and out_fmt != ".onnx":
        raise UserError("--opset, --sequence-lens and --initial-state apply to .onnx output only")
    reset_after = None if args.reset_after is None else args.reset_after == "true"

    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=dst.suffix)
    os.close(fd)
    try:
        model = read_model(src, reset_after=reset_after).eval()
        print(f"read    {src} ({FORMATS[in_fmt]}): {_describe(model)}")
        write_model(model, tmp, **onnx_opts)
        err = verify_file(model, tmp)
        tol = 1e-10 if model.weight_ih_l0.dtype == torch.float64 else 1e-5
        if not err <= tol:  # also catches NaN
            raise UserError(
                f"verification failed: {FORMATS[out_fmt]} output differs from the source by "
                f"{err:.3g} (tolerance {tol:g}); {dst} not written"
            )
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"wrote   {dst} ({FORMATS[out_fmt]})")
    print(f"verified: outputs agree on a random batch, max |difference| {err:.2g} (tolerance {tol:g})")
    return 0
