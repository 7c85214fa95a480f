"""What to measure: cases (problem sizes), formulations and modes, declared as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MODES = ("inference", "training")
FORMULATIONS = {"after": True, "before": False}  # name -> reset_after


@dataclass(frozen=True)
class Case:
    """One problem size. ``flops`` counts multiply-adds twice; training ~ 3x forward."""

    N: int
    T: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def flops(self, mode: str) -> float:
        D, H = self.directions, self.H
        forward = 0.0
        for layer in range(self.layers):
            inputs = self.I if layer == 0 else D * H
            forward += D * 2.0 * self.T * self.N * 3 * H * (inputs + H)
        return forward * (3.0 if mode == "training" else 1.0)

    @property
    def label(self) -> str:
        s = f"N={self.N} T={self.T} I={self.I} H={self.H}"
        if self.layers != 1:
            s += f" L={self.layers}"
        if self.bidirectional:
            s += " bi"
        if self.dtype != "float32":
            s += f" {self.dtype}"
        return s

    def as_dict(self) -> dict:
        return asdict(self)


# The standard grid of issue 3 (and shared/research/baselines.md): (N, T, I, H)
STANDARD = [
    Case(1, 1000, 32, 64),
    Case(1, 200, 128, 256),
    Case(8, 500, 64, 128),
    Case(32, 100, 64, 256),
    Case(64, 200, 256, 512),
    Case(256, 50, 128, 128),
    Case(16, 100, 1024, 1024),
]

# seconds, for smoke tests and a first look
TINY = [Case(2, 8, 3, 4), Case(3, 6, 4, 5, layers=2, bidirectional=True)]

GRIDS = {"standard": STANDARD, "tiny": TINY}


def parse_case(text: str) -> Case:
    """``"N,T,I,H"`` with optional ``,L`` (layers) and ``,bi``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bi = "bi" in parts
    numbers = [p for p in parts if p != "bi"]
    if len(numbers) not in (4, 5) or not all(p.isdigit() and int(p) > 0 for p in numbers):
        raise ValueError(f"expected a case as N,T,I,H[,layers][,bi] of positive integers, got {text!r}")
    values = [int(p) for p in numbers]
    return Case(*values[:4], layers=values[4] if len(values) == 5 else 1, bidirectional=bi)
