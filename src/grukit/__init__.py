"""grukit: the Gated Recurrent Unit for PyTorch, in the spec's formulation and PyTorch's.

``grukit.GRU`` and ``grukit.GRUCell`` mirror ``torch.nn.GRU`` and ``torch.nn.GRUCell``;
``grukit.functional`` holds the equations as plain tensor functions.
"""

from grukit import functional
from grukit.cells import GRUCell
from grukit.modules import GRU

__version__ = "0.1.0"
__all__ = ["GRU", "GRUCell", "functional", "__version__"]
