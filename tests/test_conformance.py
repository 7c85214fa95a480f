"""Every backend passes the shared conformance suite, grukit.testing.check_backend."""

import dataclasses

import pytest
import torch

from grukit.testing import check_backend


@pytest.mark.parametrize("backend", ["cpu", "torch", "reference"])
def test_backend_conforms(backend):
    assert check_backend(backend) > 0


def _registered_variant(monkeypatch, name, layer):
    from grukit import backends

    ref = backends.get("reference")
    monkeypatch.setitem(
        backends._REGISTRY, name, dataclasses.replace(ref, name=name, layer=layer, priority=-1)
    )


@pytest.mark.parametrize("flaw", ["formulation", "reset_after_only", "last_step", "float32_noise"])
def test_a_flawed_backend_fails_the_suite(monkeypatch, flaw):
    """The suite's oracle is independent of every backend: a backend that is subtly wrong in
    one formulation, one step or one precision is caught."""
    from grukit.functional import gru_layer

    def layer(x, h0, w_ih, w_hh, b_ih, b_hh, *, reset_after, reverse, lengths):
        if flaw == "formulation":  # always computes the other formulation
            reset_after = not reset_after
        out, h_n = gru_layer(
            x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=reset_after, reverse=reverse, lengths=lengths
        )
        if flaw == "reset_after_only" and reset_after:
            out = out * (1 + 1e-7)
        if flaw == "last_step":
            h_n = h_n + 1e-9
        if flaw == "float32_noise" and x.dtype == torch.float32:
            out = out + 1e-3 * torch.randn_like(out)
        return out, h_n

    _registered_variant(monkeypatch, "flawed", layer)
    with pytest.raises(AssertionError):
        check_backend("flawed", gradcheck=False)


@pytest.mark.slow  # two subprocesses running the reference suite: 20 s of the default suite's 15 min
def test_suite_inputs_do_not_depend_on_the_hash_seed():
    """The inputs (and so any failure) are the same in every process, whatever PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, grukit.testing as t\n"
        "orig, seen = t._inputs, []\n"
        "def spy(cfg, dtype, seed, **kw):\n"
        "    x, hx, _ = orig(cfg, dtype, seed, **kw); seen.append(float(x.sum()))\n"
        "    return orig(cfg, dtype, seed, **kw)\n"
        "t._inputs = spy\n"
        "t.check_backend('reference', gradcheck=False)\n"
        "print(repr(seen))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": s},
        ).stdout
        for s in ("1", "2")
    ]
    assert runs[0] == runs[1] and len(runs[0]) > 10
