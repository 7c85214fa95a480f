"""``import grukit`` stays cheap: it loads torch and NumPy, not the compiler stack or the optional
packages, and the one place that marks a function for torch.compile does what torch's own
decorator does without importing torch._dynamo."""

import subprocess
import sys

import torch

from grukit.backends.cpu import assume_constant_result


def test_import_grukit_loads_neither_dynamo_nor_the_optional_packages():
    heavy = [
        "torch._dynamo",
        "numba",
        "onnx",
        "onnxruntime",
        "openvino",
        "pandas",
        "matplotlib",
        "scipy",
        "soundfile",
        "keras",
    ]
    code = (
        f"import sys, grukit; m = grukit.GRU(3, 4); print(' '.join(n for n in {heavy!r} if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_constant_mark_is_what_torch_compilers_decorator_sets():
    def ours():
        return None

    def theirs():
        return None

    assert assume_constant_result(ours) is ours
    torch.compiler.assume_constant_result(theirs)
    assert vars(ours) == vars(theirs) == {"_dynamo_marked_constant": True}
