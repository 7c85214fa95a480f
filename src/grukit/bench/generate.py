"""``grukit bench --generate``: token-by-token text generation at batch 1, in characters per second.

For each case (an LM of L layers of H units over V tokens, tied embedding, random weights,
``reset_after=True`` so that ``torch.nn.GRU`` computes the same function), with the same weights:

    grukit-Kt   ``grukit.apps.text.sampling.Sampler``: S steps and draws in one compiled call
    torch-Kt    ``nn.Embedding`` -> ``nn.GRU`` -> ``nn.Linear`` -> softmax -> ``torch.multinomial``,
                one token per Python iteration under ``torch.inference_mode``
    floor-Kt    every weight array the step reads (``W_hh`` of each layer, ``W_ih`` of layers >= 1,
                the output matrix), summed once per token with ``torch.sum`` (faster than
                NumPy's sum or a copy on the machine this was written on; on K threads, since a
                product on two cores streams its weights through both): the time to stream the
                weights from memory or cache, which a step can hardly beat (the
                embedding row is one lookup, not counted; the per-call overhead of a few
                microseconds per array is included, so at small sizes the floor is loose)

with K threads (``torch.set_num_threads``: PyTorch's pool, which also runs grukit's GEMMs). One
measurement generates ``tokens`` tokens; providers run interleaved round by round (order rotated),
and the table shows medians. Characters per second = tokens per second (one token per character or
byte). Results, the machine, versions and thread counts go to ``generate.json`` and the table to
``generate.md`` in the bench output folder.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["GenCase", "GenerateConfig", "CASES", "TOKENS", "measure", "markdown", "write"]


@dataclass(frozen=True)
class GenCase:
    """One language model: V tokens, H hidden, L layers (E = H, tied)."""

    label: str
    V: int
    H: int
    L: int


CASES = (GenCase("1 layer, H=256", V=256, H=256, L=1), GenCase("2 layers, H=512", V=256, H=512, L=2))
TOKENS = 1000  # per measurement: long enough that per-call overheads are a small share


@dataclass(frozen=True)
class GenerateConfig:
    """What to measure. ``tokens``: per measurement; ``rounds``: interleaved rounds (medians);
    ``threads``: the thread counts of grukit and torch (each reported)."""

    cases: tuple[GenCase, ...] = CASES
    tokens: int = TOKENS
    rounds: int = 5
    threads: tuple[int, ...] = (1, 2)
    dtype: str = "float32"
    seed: int = 0


@dataclass
class GenResult:
    case: GenCase
    provider: str
    threads: int | None
    times: list[float] = field(default_factory=list)  # seconds per measurement

    def chars_per_s(self, tokens: int) -> float:
        return tokens / statistics.median(self.times)


def _models(case: GenCase, dtype: torch.dtype, seed: int):
    """The grukit LM and the torch.nn peer holding the same weights (both eval mode)."""
    from grukit.apps.text.model import LMConfig, LMNet

    torch.manual_seed(seed)
    net = LMNet(LMConfig(hidden_size=case.H, num_layers=case.L, reset_after=True), case.V)
    net = net.to(dtype).eval()
    emb = nn.Embedding(case.V, case.H).to(dtype)
    gru = nn.GRU(case.H, case.H, num_layers=case.L, batch_first=True).to(dtype)
    head = nn.Linear(case.H, case.V).to(dtype)
    with torch.no_grad():
        emb.weight.copy_(net.embedding.weight)
        head.weight.copy_(net.head.weight)
        head.bias.copy_(net.head.bias)
        for name, p in gru.named_parameters():
            p.copy_(getattr(net.gru, name))
    return net, (emb.eval(), gru.eval(), head.eval())


def _grukit(net, tokens: int, rng) -> Callable[[], None]:
    from grukit.apps.text.sampling import Sampler

    sampler = Sampler(net, rows=1, temperature=1.0)
    u = rng.random((tokens, 1))  # (S, 1)
    return lambda: sampler.run(np.zeros(1, np.int64), tokens, u)


def _torch(peer, tokens: int) -> Callable[[], None]:
    emb, gru, head = peer

    @torch.inference_mode()
    def run():
        x = torch.zeros(1, 1, dtype=torch.long)  # (1, 1)
        h = None
        for _ in range(tokens):
            y, h = gru(emb(x), h)  # (1, 1, H), (L, 1, H)
            p = torch.softmax(head(y[:, 0]), dim=-1)  # (1, V)
            x = torch.multinomial(p, 1)  # (1, 1)

    return run


def _floor(net, tokens: int) -> Callable[[], None]:
    g = net.gru
    arrays = [getattr(g, f"weight_hh_l{k}").detach() for k in range(g.num_layers)]
    arrays += [getattr(g, f"weight_ih_l{k}").detach() for k in range(1, g.num_layers)]
    arrays.append(net.head.weight.detach())

    @torch.inference_mode()
    def run():
        for _ in range(tokens):
            for a in arrays:
                a.sum()  # PyTorch's vectorised reduction: the fastest plain read measured here

    return run


def measure(config: GenerateConfig, on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
    """Every case: build the providers, warm each up once, then ``rounds`` interleaved rounds."""
    dtype = getattr(torch, config.dtype)
    saved = torch.get_num_threads()
    results: list[GenResult] = []
    try:
        for case in config.cases:
            net, peer = _models(case, dtype, config.seed)
            rng = np.random.default_rng(config.seed)
            runs: list[tuple[GenResult, Callable[[], None]]] = []
            for k in config.threads:
                runs.append((GenResult(case, f"grukit-{k}t", k), _grukit(net, config.tokens, rng)))
            for k in config.threads:
                runs.append((GenResult(case, f"torch-{k}t", k), _torch(peer, config.tokens)))
            for k in config.threads:
                runs.append((GenResult(case, f"floor-{k}t", k), _floor(net, config.tokens)))
            for r, run in runs:  # warm-up: compilation, lazy initialisation
                torch.set_num_threads(r.threads)
                run()
            for round_ in range(config.rounds):
                k = round_ % len(runs)
                for r, run in runs[k:] + runs[:k]:
                    torch.set_num_threads(r.threads)
                    start = time.perf_counter()
                    run()
                    r.times.append(time.perf_counter() - start)
            for r, _ in runs:
                results.append(r)
                if on_result is not None:
                    on_result(r)
    finally:
        torch.set_num_threads(saved)
    return results


def _by_case(results: list[GenResult]) -> dict[GenCase, dict[str, GenResult]]:
    groups: dict[GenCase, dict[str, GenResult]] = {}
    for r in results:
        groups.setdefault(r.case, {})[r.provider] = r
    return groups


def markdown(results: list[GenResult], config: GenerateConfig) -> str:
    """One row per case: characters per second of each provider, grukit's best over torch's best,
    and grukit's best as a share of the floor's best rate."""
    names = list(dict.fromkeys(r.provider for r in results))
    lines = [
        f"Characters per second at batch 1 ({config.dtype}, {config.tokens} tokens per "
        f"measurement, median of {config.rounds} interleaved rounds)",
        "",
        "| model (V, H, L) | " + " | ".join(names) + " | grukit / best torch | grukit / floor |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for case, peers in _by_case(results).items():
        rate = {n: peers[n].chars_per_s(config.tokens) for n in names if n in peers}
        g, t, f = (
            max((v for n, v in rate.items() if n.startswith(prefix)), default=None)
            for prefix in ("grukit", "torch", "floor")
        )
        ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
        cells = [f"{rate[n]:,.0f}" if n in rate else "-" for n in names]
        lines.append(
            f"| {case.label} ({case.V}, {case.H}, {case.L}) | "
            + " | ".join(cells)
            + f" | {ratio(g, t)} | {ratio(g, f)} |"
        )
    return "\n".join(lines)


def environment() -> dict:
    """The bench's machine record (CPU, vector extensions, versions, threads) plus which sampler
    path runs."""
    from grukit.bench.report import environment as machine

    env = machine()
    from grukit.apps.text import sampling

    env["sampler_path"] = "compiled" if sampling._kernel() is not None else "torch (no Numba/BLAS)"
    return env


def write(
    out: Path,
    config: GenerateConfig,
    command: str = "grukit bench --generate",
    on_result: Callable[[GenResult], None] | None = None,
) -> str:
    """Measure, then write ``generate.md`` and ``generate.json`` into ``out``; returns the table."""
    from grukit._io import atomic_write_text

    results = measure(config, on_result)
    md = markdown(results, config)
    rows = [
        {
            "case": r.case.label,
            **asdict(r.case),
            "provider": r.provider,
            "threads": r.threads,
            "chars_per_s": r.chars_per_s(config.tokens),
            "times_s": r.times,
        }
        for r in results
    ]
    data = {
        "command": command,
        "environment": environment(),
        "config": {**asdict(config), "cases": [asdict(c) for c in config.cases]},
        "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "generate.json", json.dumps(data, indent=2))
    env = data["environment"]
    machine = (
        f"Machine: {env.get('cpu')}, {env.get('cores')} cores "
        f"({', '.join(env.get('vector_extensions', [])) or 'no vector extensions listed'}); "
        f"torch {env['versions'].get('torch')}, numba {env['versions'].get('numba')}; "
        f"sampler path {env.get('sampler_path')}. Command: `{command}`."
    )
    atomic_write_text(out / "generate.md", md + "\n\n" + machine + "\n")
    return md
