"""The Numenta Anomaly Benchmark in grukit: its score (``scoring``), its simple detectors and
grukit's online GRU detector (``detectors``), and a run over the whole benchmark (``run``).
The data loader is :mod:`grukit.data.nab`."""
