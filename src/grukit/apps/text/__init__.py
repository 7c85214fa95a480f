"""Text generation: a character/byte GRU language model (``grukit text``)."""
