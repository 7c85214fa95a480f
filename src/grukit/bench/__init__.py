"""``grukit bench``: GRU speed side by side with ``torch.nn.GRU`` and ONNX Runtime.

Declarative: a grid of :class:`~grukit.bench.cases.Case` x providers x modes x formulations,
run interleaved round by round in one process (:mod:`grukit.bench.runner`), reported as a
terminal table and as CSV/JSON with the machine, versions and thread counts
(:mod:`grukit.bench.report`).
"""
