"""Speech recognition with a GRU: isolated words (classification) and strings of words (CTC),
from WAV/FLAC/OGG files, with streaming recognition of live audio (``grukit speech``)."""
