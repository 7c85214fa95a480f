"""The adding problem: does a GRU carry information across long sequences where a plain RNN fails?

Each sequence has T steps of two features: a value drawn from U(0, 1) and a marker that is 1 at
exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the two marked
values. Always predicting the mean, 1.0, scores an MSE of Var(U + U) = 2/12 = 0.167: a model beats
that baseline only by remembering the first marked value across at least T/2 steps.
(Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015.)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

import grukit

BASELINE_MSE = 2.0 / 12.0  # always predicting 1.0 = E[U + U]


def adding_batch(n: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` sequences of length ``T``: inputs (n, T, 2) and targets (n, 1)."""
    values = torch.rand(n, T, generator=generator)  # (n, T)
    first = torch.randint(0, T // 2, (n,), generator=generator)  # (n,)
    second = torch.randint(T // 2, T, (n,), generator=generator)  # (n,)
    markers = torch.zeros(n, T)  # (n, T)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], -1)  # (n, T, 2)
    y = (values * markers).sum(1, keepdim=True)  # (n, 1)
    return x, y


class Regressor(nn.Module):
    """A recurrent layer read out at the last step by a linear head."""

    def __init__(self, rnn: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, 2) -> (N, 1)
        out, _ = self.rnn(x)  # (N, T, H)
        return self.head(out[:, -1])


def default_models() -> dict[str, Callable[[int], nn.Module]]:
    """Model name -> constructor taking the hidden size; all batch-first, 2 inputs."""
    return {
        "grukit.GRU reset_after=False (spec)": lambda H: grukit.GRU(2, H, batch_first=True),
        "grukit.GRU reset_after=True (torch)": lambda H: grukit.GRU(
            2, H, batch_first=True, reset_after=True
        ),
        "torch.nn.RNN (tanh)": lambda H: nn.RNN(2, H, batch_first=True),
    }


@dataclass(frozen=True)
class AddingConfig:
    """The same training budget for every model and length."""

    lengths: tuple[int, ...] = (50, 100, 200)  # about 2 minutes on 2 cores with the cpu backend
    steps: int = 300  # optimiser steps per model and length; a GRU solves T=100 in ~200
    batch_size: int = 128  # per-step cost is overhead-bound at this size, so a large batch is cheap
    hidden_size: int = 32
    lr: float = 1e-2  # Adam
    clip: float = 1.0  # gradient-norm clipping, the usual guard against exploding RNN gradients
    test_size: int = 1000  # held-out sequences, the same for every model at a given length
    eval_every: int = 25
    seed: int = 0


@dataclass
class RunResult:
    model: str
    length: int
    steps: list[int] = field(default_factory=list)
    test_mse: list[float] = field(default_factory=list)
    seconds: float = 0.0
    backend: str | None = None

    @property
    def final_mse(self) -> float:
        return self.test_mse[-1]


def train_one(
    name: str,
    make: Callable[[int], nn.Module],
    T: int,
    cfg: AddingConfig,
    on_step: Callable[[float], None] | None = None,
) -> RunResult:
    """Train one model at one length; every model sees the same batches and test set."""
    torch.manual_seed(cfg.seed)
    model = Regressor(make(cfg.hidden_size), cfg.hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    data = torch.Generator().manual_seed(cfg.seed * 1000 + T)
    x_test, y_test = adding_batch(cfg.test_size, T, torch.Generator().manual_seed(10**6 + T))
    result = RunResult(model=name, length=T)
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x, y = adding_batch(cfg.batch_size, T, data)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        if on_step is not None:
            on_step(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with torch.no_grad():
                mse = nn.functional.mse_loss(model(x_test), y_test).item()
            if not math.isfinite(mse):
                raise FloatingPointError(f"{name} diverged at T={T}, step {step}")
            result.steps.append(step)
            result.test_mse.append(mse)
    result.seconds = time.perf_counter() - start
    result.backend = getattr(model.rnn, "backend_used", None) or "torch"
    return result


def run(
    cfg: AddingConfig,
    models: dict[str, Callable[[int], nn.Module]] | None = None,
    progress: bool = True,
) -> list[RunResult]:
    models = models or default_models()
    total = cfg.steps * len(models) * len(cfg.lengths)
    bar = _progress(total, progress)
    results = []
    try:
        for T in cfg.lengths:
            for name, make in models.items():
                bar.set_description(f"T={T} {name.split(' ')[0]} {name.split(' ')[1]}")

                def on_step(loss: float) -> None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

                results.append(train_one(name, make, T, cfg, on_step))
    finally:
        bar.close()
    return results


def _progress(total: int, enabled: bool):
    from grukit._extras import require

    tqdm = require("tqdm.auto", "apps", what="the progress bar").tqdm
    return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)


def format_table(results: list[RunResult]) -> str:
    """Final test MSE per model (rows) and length (columns), beside the 0.167 baseline."""
    lengths = sorted({r.length for r in results})
    names = list(dict.fromkeys(r.model for r in results))
    by = {(r.model, r.length): r for r in results}
    width = max(len(n) for n in names + ["predict 1.0 (baseline)"])
    head = f"{'model':<{width}}  " + "  ".join(f"{'T=' + str(T):>9}" for T in lengths)
    lines = [head, "-" * len(head)]
    for n in names:
        cells = "  ".join(f"{by[n, T].final_mse:>9.4f}" for T in lengths)
        lines.append(f"{n:<{width}}  {cells}")
    base = "  ".join(f"{BASELINE_MSE:>9.4f}" for _ in lengths)
    lines.append(f"{'predict 1.0 (baseline)':<{width}}  {base}")
    return "\n".join(lines)


def verdicts(results: list[RunResult], solved: float = 0.1 * BASELINE_MSE) -> list[str]:
    """One line per run: solved (under 10% of the baseline MSE), learning, or not learning."""
    out = []
    for r in results:
        ratio = r.final_mse / BASELINE_MSE
        state = "solved" if r.final_mse < solved else "partly" if ratio < 0.8 else "not learned"
        out.append(f"T={r.length:<4} {r.model:<38} {state:<12} {100 * ratio:5.1f}% of baseline MSE")
    return out


def plot(results: list[RunResult], path) -> None:
    """Learning curves (test MSE, log scale) per length, one panel each; written as PNG."""
    from grukit._extras import require

    matplotlib = require("matplotlib", "apps", what="plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r.length for r in results})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for r in (r for r in results if r.length == T):
            ax.plot(r.steps, r.test_mse, label=r.model)
        ax.axhline(BASELINE_MSE, color="grey", linestyle="--", label="predict 1.0 (0.167)")
        ax.set_yscale("log")
        ax.set_title(f"adding problem, T = {T}")
        ax.set_xlabel("training step")
        ax.set_ylabel("test MSE")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(cfg: AddingConfig, results: list[RunResult]) -> dict:
    """A JSON-ready record of the configuration and every run."""
    return {
        "task": "adding problem",
        "baseline_mse": BASELINE_MSE,
        "config": asdict(cfg),
        "runs": [asdict(r) | {"final_mse": r.final_mse} for r in results],
    }
