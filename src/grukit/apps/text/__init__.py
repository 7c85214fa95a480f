"""Text generation: a character/byte GRU language model (``grukit text``).

- :class:`GRULanguageModel`: the estimator (fit, evaluate in bits per character, generate).
- :class:`LMConfig`: its network's hyperparameters; :class:`LMNet`: the network.
- :func:`grukit.apps.text.export.export_onnx`: the model as one ONNX graph (``grukit text export``).
"""

from grukit.apps.text.estimator import GRULanguageModel
from grukit.apps.text.model import LMConfig, LMNet

__all__ = ["GRULanguageModel", "LMConfig", "LMNet"]
