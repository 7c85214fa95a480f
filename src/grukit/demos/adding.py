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
from dataclasses import asdict, dataclass, field, fields
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
        "grukit.GRU reset_after=True (torch)": lambda H: grukit.GRU(2, H, batch_first=True, reset_after=True),
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
    network: nn.Module | None = field(default=None, repr=False, compare=False)  # the Regressor

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
    result.network = model.eval()
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
        "runs": [_record(r) | {"final_mse": r.final_mse} for r in results],
    }


def _record(r: RunResult) -> dict:
    """A run's JSON-ready fields (the trained network is not one)."""
    return {f.name: getattr(r, f.name) for f in fields(r) if f.name != "network"}


# -- what the trained GRU's gates do ---------------------------------------------------------

GATE_MODEL = "grukit.GRU reset_after=False (spec)"


def gate_run(results: list[RunResult]) -> RunResult | None:
    """The spec GRU's run at the longest length it solved (else at its shortest length)."""
    runs = [r for r in results if r.model == GATE_MODEL and r.network is not None]
    if not runs:
        return None
    solved = [r for r in runs if r.final_mse < 0.1 * BASELINE_MSE]
    return max(solved, key=lambda r: r.length) if solved else min(runs, key=lambda r: r.length)


@dataclass(frozen=True)
class GateStudy:
    """The update gate of a trained GRU on held-out sequences, around the two markers.

    ``z``: (T, H) of the sequence drawn; ``x``: its input (T, 2); ``first``, ``second``: its
    marker steps; ``units``: the units ranked by their mean z strictly between the markers,
    over ``sequences`` sequences; the means are those of the ``top`` first units of that ranking:
    before the first marker, at it, between the markers, after the second.
    """

    length: int
    z: Tensor
    x: Tensor
    first: int
    second: int
    units: Tensor
    top: int
    sequences: int
    before: float
    at_first: float
    between: float
    after: float
    backend: str


def gate_study(run: RunResult, sequences: int = 256, top: int = 4, seed: int = 0) -> GateStudy:
    """Where the trained GRU of ``run`` holds its state: the update gate z of its units on
    ``sequences`` fresh sequences of the run's length (gates from :func:`grukit.inspect.gates`)."""
    from grukit import inspect

    T = run.length
    x, _ = adding_batch(sequences, T, torch.Generator().manual_seed(2 * 10**6 + T + seed))
    trace = inspect.gates(run.network.rnn, x)  # batch_first input; the trace is time-major
    z = trace.z[0, 0]  # (T, N, H)
    markers = x[:, :, 1].T > 0  # (T, N)
    first = markers.float().argmax(0)  # (N,) the first marker's step
    second = T - 1 - markers.flip(0).float().argmax(0)  # (N,) the second's
    steps = torch.arange(T)[:, None]  # (T, 1)
    parts = {
        "before": steps < first,
        "at_first": steps == first,
        "between": (steps > first) & (steps < second),
        "after": steps > second,
    }  # each (T, N)

    def mean_z(part: Tensor) -> Tensor:  # (T, N) -> (H,): each unit's mean z over those steps
        w = part.to(z.dtype).unsqueeze(-1)  # (T, N, 1)
        return (z * w).sum((0, 1)) / w.sum().clamp_min(1)

    units = mean_z(parts["between"]).argsort(descending=True)  # (H,)
    means = {k: float(mean_z(v)[units[:top]].mean()) for k, v in parts.items()}
    return GateStudy(
        length=T,
        z=z[:, 0],
        x=x[0],
        first=int(first[0]),
        second=int(second[0]),
        units=units,
        top=top,
        sequences=sequences,
        backend=trace.backend,
        **means,
    )


def describe_gates(study: GateStudy) -> str:
    """One sentence saying what the gate figure shows, from the study's numbers."""
    s = study
    return (
        f"The update gate z of the spec GRU trained at T = {s.length} on {s.sequences} fresh "
        f"sequences: its {s.top} units with the highest z between the two markers hold z at "
        f"{s.between:.2f} there (a state kept for about {1 / max(1 - s.between, 1e-9):.0f} steps), "
        f"against {s.before:.2f} before the first marker and {s.after:.2f} after the second; at "
        f"the first marker their z is {s.at_first:.2f}"
        + (" (they open to write the marked value in)." if s.at_first < s.between - 0.1 else ".")
    )


def plot_gates(study: GateStudy, path) -> None:
    """The input of one sequence and the z heatmap of every unit (ranked as in the study), the
    two markers drawn; written as PNG."""
    from grukit._inspect_plots import plot_gates as draw

    order = study.units.numpy()
    panel = ("z, units by mean z\nbetween the markers", study.z.numpy()[:, order])  # (T, H)
    title = f"adding problem, T = {study.length}: the update gate z of every unit (gates by {study.backend})"
    draw(
        path,
        study.x.numpy(),
        [panel],
        units=order,
        title=title,
        signal_label="value / marker",
        channel_names=["value", "marker"],
        markers=[study.first, study.second],
    )
