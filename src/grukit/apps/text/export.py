"""A trained language model as one ONNX graph, for runtimes without PyTorch.

Shapes: N streams (batch), T steps, V vocabulary, H hidden, L layers; N and T are dynamic.

    inputs:  tokens     int64    (N, T)     token ids (the vocabulary's order)
             state      float32  (L, N, H)  the state before the first step (zeros to start)
    outputs: logits     float32  (N, T, V)  p(x_{t+1} | x_1 .. x_t) = softmax(logits[:, t])
             state_out  float32  (L, N, H)  the state after the last step: the next chunk's state

so a deployer reads a prompt in one call and then feeds one token at a time, ``state_out`` back
into ``state``. The graph is what ``torch.onnx.export`` (its default, ``torch.export``-based
exporter) makes of :class:`~grukit.apps.text.LMNet`: a ``Gather`` for the embedding, one standard
ONNX ``GRU`` node per layer (``linear_before_reset`` = ``reset_after``: 0 for the spec's
formulation, 1 for PyTorch's; see :mod:`grukit._onnx_nodes`), ``MatMul``/``Add`` for the output
layer. The vocabulary goes beside the file as ``<stem>.vocab.json`` (``Vocabulary.to_dict()``,
which ``Vocabulary.from_dict`` reads back) and into the model's ``metadata_props``
(``grukit.vocab``; also ``grukit.lm``, the network's configuration).

Before the file replaces ``path`` it is run in ONNX Runtime on a random batch (other sizes than
the traced example, a random state) and compared with the PyTorch model: next-token
log-probabilities and the state within ``TOLERANCE``. ``layer_norm`` and ``zoneout`` have no
counterpart in ONNX's ``GRU`` node and are refused; the dropouts are identity in evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from pathlib import Path

import torch

import grukit
from grukit._extras import require
from grukit._io import atomic_write, atomic_write_text
from grukit.convert._common import _WHY, ConversionError

__all__ = ["export_onnx", "vocab_path", "TOLERANCE", "MIN_OPSET"]

TOLERANCE = 1e-4  # log-probabilities and state, ONNX Runtime vs PyTorch (float32 both sides)
MIN_OPSET = 17  # the exporter writes 18 and newer; 17 by conversion; older ones fail to convert
_VERIFY_SHAPE = (3, 11)  # (N, T) of the check: not the traced example's, so the axes are dynamic
# what refuse_variants(target=ONNX's GRU node) refuses (grukit.convert.export_onnx keeps the dropouts)
_UNEXPRESSIBLE = ("layer_norm", "zoneout")
_NOISY = ("torch.onnx", "onnxscript")  # loggers that narrate the export (info, fallbacks)


def vocab_path(path: str | os.PathLike) -> Path:
    """Where :func:`export_onnx` writes the vocabulary: ``model.onnx`` -> ``model.vocab.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".vocab.json")


def export_onnx(lm, path: str | os.PathLike, *, opset: int | None = None):
    """Write the fitted language model ``lm`` to ``path`` (module docstring), verified in ONNX
    Runtime first, and its vocabulary to :func:`vocab_path`; return the ``onnx.ModelProto``.

    Args:
        lm: a fitted :class:`~grukit.apps.text.GRULanguageModel` (float32).
        opset: the ONNX opset (default: the exporter's); from ``MIN_OPSET`` to the installed
            ``onnx``'s newest, and one that ONNX Runtime runs.

    Raises ``ConversionError`` for a model ONNX's GRU cannot express, a bad opset or a failed
    check (``path`` is then left as it was), ``MissingDependency`` without the ``onnx`` extra.
    """
    from grukit.apps.text.estimator import GRULanguageModel

    if not isinstance(lm, GRULanguageModel):
        raise TypeError(f"export_onnx: expected a GRULanguageModel, got {type(lm).__name__}")
    lm._check_fitted()
    onnx = require("onnx", "onnx", what="exporting a language model to ONNX")
    require("onnxscript", "onnx", what="torch.onnx.export (the exporter of a model holding a GRU)")
    ort = require("onnxruntime", "onnx", what="checking the ONNX export with ONNX Runtime")
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and (
        isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest
    ):
        raise ConversionError(
            f"export_onnx: expected opset to be an int from {MIN_OPSET} to {newest} "
            f"(the installed onnx's newest), got {opset!r}"
        )
    gru = lm.net_.gru
    on = [key for key in _UNEXPRESSIBLE if getattr(gru, key)]
    if on:  # the dropouts are identity in evaluation; these two change the function
        what = "; ".join(f"{key}={getattr(gru, key)!r}: {_WHY[key]}" for key in on)
        raise ConversionError(
            f"export_onnx: this language model cannot be exported to ONNX: ONNX's GRU node has no "
            f"counterpart for {what}; train one without {' or '.join(on)} to deploy it with ONNX"
        )
    dtype = lm.net_.embedding.weight.dtype
    if dtype != torch.float32:
        raise ConversionError(
            f"export_onnx: expected a float32 model, got {dtype}; the graph's "
            "state is float32 (call lm.net_.float() first)"
        )
    path = Path(path)
    net = copy.deepcopy(lm.net_).to("cpu").eval()  # the caller's model keeps its device and mode

    proto = _export(net, opset)
    wrote = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and wrote != opset:
        raise ConversionError(
            f"export_onnx: the exporter could not write opset {opset} (it wrote "
            f"{wrote}); pass an opset from 18, or none"
        )
    vocab = lm.vocab_.to_dict()
    onnx.helper.set_model_props(
        proto,
        {
            **{p.key: p.value for p in proto.metadata_props},
            "grukit.vocab": json.dumps(vocab, ensure_ascii=False),
            "grukit.lm": json.dumps(dict(lm.config.__dict__)),
            "grukit.version": grukit.__version__,
        },
    )
    proto.doc_string = (
        "grukit language model: tokens (N, T) int64, state (L, N, H) float32 -> "
        "logits (N, T, V), state_out (L, N, H)"
    )

    def write(tmp: str) -> None:
        onnx.save_model(proto, tmp)
        _verify(ort, tmp, net, path)

    atomic_write(path, write)
    atomic_write_text(vocab_path(path), json.dumps(vocab, ensure_ascii=False, indent=1))
    return proto


@contextlib.contextmanager
def _quiet():
    """The exporter's warnings and log lines (fallbacks it recovers from, missing torchvision)
    silenced; errors still raise."""
    loggers = [logging.getLogger(name) for name in _NOISY]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(net, opset: int | None):
    """``net`` through ``torch.onnx.export`` with dynamic N and T; the ``onnx.ModelProto``."""
    L, H, V = net.cfg.num_layers, net.cfg.hidden_size, net.head.out_features
    tokens = torch.randint(0, V, (2, 5))  # (N, T) the traced example
    state = torch.zeros(L, 2, H)  # (L, N, H)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    with _quiet():
        program = torch.onnx.export(
            net,
            (tokens, state),
            None,
            dynamo=True,
            verbose=False,
            opset_version=opset,
            input_names=["tokens", "state"],
            output_names=["logits", "state_out"],
            dynamic_shapes=({0: batch, 1: time}, {1: batch}),
        )
    return program.model_proto


def _verify(ort, file: str, net, path: Path) -> None:
    """ONNX Runtime on ``file`` against ``net`` on a random batch and state; raise if they differ."""
    N, T = _VERIFY_SHAPE
    L, H, V = net.cfg.num_layers, net.cfg.hidden_size, net.head.out_features
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (N, T), generator=g)  # (N, T)
    state = torch.randn(L, N, H, generator=g) * 0.5  # (L, N, H)
    try:
        session = ort.InferenceSession(file, providers=["CPUExecutionProvider"])
        logits, state_out = session.run(None, {"tokens": tokens.numpy(), "state": state.numpy()})
    except Exception as exc:  # ONNX Runtime's own error types: an opset it lacks, say
        raise ConversionError(
            f"export_onnx: ONNX Runtime cannot run the exported graph "
            f"({type(exc).__name__}: {str(exc).strip()[:300]}); {path} not written"
        ) from None
    with torch.no_grad():
        want_logits, want_state = net(tokens, state)  # (N, T, V), (L, N, H)
    if logits.shape != tuple(want_logits.shape) or state_out.shape != tuple(want_state.shape):
        raise ConversionError(
            f"export_onnx: verification failed: ONNX Runtime gave shapes {logits.shape} "
            f"and {state_out.shape}, expected {tuple(want_logits.shape)} and "
            f"{tuple(want_state.shape)}; {path} not written"
        )
    logp = torch.log_softmax(torch.from_numpy(logits).double(), -1)  # (N, T, V)
    want_logp = torch.log_softmax(want_logits.double(), -1)
    err = max(
        (logp - want_logp).abs().max().item(),
        (torch.from_numpy(state_out).double() - want_state.double()).abs().max().item(),
    )
    if not err <= TOLERANCE:  # also catches NaN
        raise ConversionError(
            f"export_onnx: verification failed: ONNX Runtime differs from the model by "
            f"{err:.3g} (tolerance {TOLERANCE:g}); {path} not written"
        )
