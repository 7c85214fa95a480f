"""Weight exchange between grukit and other GRU conventions: ``torch.nn.GRU``, Keras 3, ONNX,
and files of each.

:mod:`grukit.convert.layout` is the one module that knows gate orders, transposes and bias
splits; everything else converts through it. ONNX and Keras are imported on first use (extras
``grukit[onnx]``, ``grukit[keras]``). See ``docs/convert.md`` for the conversion table.
"""

from grukit.convert._common import ConversionError
from grukit.convert.files import FORMATS, read_model, verify_file, write_model
from grukit.convert.keras import from_keras, load_keras, save_keras, to_keras
from grukit.convert.onnx_export import export_onnx
from grukit.convert.onnx_import import load_onnx
from grukit.convert.torch import from_state_dict, from_torch, to_torch

__all__ = [
    "ConversionError",
    "from_torch",
    "to_torch",
    "from_state_dict",
    "from_keras",
    "to_keras",
    "load_keras",
    "save_keras",
    "export_onnx",
    "load_onnx",
    "FORMATS",
    "read_model",
    "write_model",
    "verify_file",
]
