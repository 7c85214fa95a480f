"""``grukit.save`` / ``grukit.load``: a ``grukit.GRU`` as one ``.safetensors`` file (weights and
configuration, no pickle). The format lives with the other file formats in
:mod:`grukit.convert.safetensors`; this module keeps the import path ``grukit.serialization``.

Imports go one way: this module imports ``grukit.convert``, nothing in ``grukit.convert`` imports
this module."""

from grukit.convert.safetensors import FORMAT, load, read_metadata, save

__all__ = ["save", "load", "read_metadata", "FORMAT"]
