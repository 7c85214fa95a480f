"""ONNX, in two files of one concept each: :mod:`grukit.convert.onnx_export` writes a
``grukit.GRU`` as standard ``GRU`` nodes, :mod:`grukit.convert.onnx_import` reads such nodes back.
This module keeps the import path ``grukit.convert.onnx`` for both."""

from grukit.convert.onnx_export import DEFAULT_OPSET, MIN_OPSET, export_onnx
from grukit.convert.onnx_import import load_onnx

__all__ = ["export_onnx", "load_onnx", "DEFAULT_OPSET", "MIN_OPSET"]
