"""grukit: the Gated Recurrent Unit for PyTorch, in the spec's formulation and PyTorch's.

``grukit.GRU`` and ``grukit.GRUCell`` mirror ``torch.nn.GRU`` and ``torch.nn.GRUCell``;
``grukit.functional`` holds the equations as plain tensor functions; ``grukit.save`` /
``grukit.load`` write and read a model (weights + configuration) as one ``.safetensors`` file;
``grukit.convert`` moves weights to and from ``torch.nn.GRU``, Keras and ONNX;
``grukit.inspect.gates`` returns a forward pass's reset gate, update gate and candidate.
"""

from grukit import functional, inspect
from grukit.cells import GRUCell
from grukit.modules import GRU
from grukit.serialization import load, save

__version__ = "0.1.0"
__all__ = ["GRU", "GRUCell", "functional", "inspect", "save", "load", "__version__"]
