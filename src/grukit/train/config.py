"""The trainer's configuration: typed, strict, saved next to every result."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["TrainConfig", "from_dict", "ConfigError"]


class ConfigError(ValueError):
    """A configuration value out of range or an unknown option."""


SCHEDULES = ("cosine", "plateau", "constant", "budget")
PROGRESS = ("auto", "on", "off")
PRECISIONS = ("float32", "bf16")


@dataclass
class TrainConfig:
    """How to train. Every field has the reason for its default.

    Attributes:
        epochs: upper bound on passes; early stopping usually ends sooner.
        batch_size: per process; 256 windows keep the fused GRU kernel busy on 2 cores.
        lr: Adam's step size; 3e-3 trains small GRUs fast without diverging.
        weight_decay: decoupled (AdamW); 0 because early stopping already regularises.
        schedule: "cosine" (decay to 5% of lr over ``epochs``), "plateau" (halve when a third
            epoch in a row brings no better validation loss: 2 flat epochs are tolerated),
            "constant", or "budget" (needs ``max_time``: the learning rate falls linearly with
            the time spent, from ``lr`` to 0 when the budget runs out, the budget-aware schedule
            of Li, Yumer & Ramanan 2020; each step's rate follows the clock, so it suits a run
            that is given minutes rather than epochs).
        warmup_steps: the learning rate rises linearly from ``lr / warmup_steps`` to the
            schedule's value over the first this-many optimizer steps (0: no warm-up). Early
            full-size Adam steps can drive a recurrent net into a flat region it does not
            leave: CTC's all-blank plateau (docs/speech.md).
        clip_grad_norm: clip the global gradient norm (recurrent nets spike); None turns it off.
        patience: stop after this many epochs without a better validation loss; None = never.
        steps_per_epoch: cap on batches per epoch (for large sampled datasets); None = all.
        seed: seeds torch, numpy and the data order; the same seed gives the same run.
        deterministic: also make every torch kernel deterministic (slower, same bits each run).
        progress: "auto" (bars on a terminal only), "on", "off" (no bars, no epoch lines).
        max_time: a wall-clock budget in seconds for the whole run, resumes included (None: no
            budget). When it runs out the epoch in progress ends after its current step, is
            validated and checkpointed, and the run is complete; resuming with a larger budget
            continues it.
        precision: "float32", or "bf16" for bfloat16 mixed precision: each step's forward pass
            and loss (training and validation) run under ``torch.autocast`` with bfloat16, so
            linear layers multiply in bfloat16 and ``grukit.GRU``'s products do where the CPU
            has AVX512-BF16 or AMX; weights, gradients and the optimizer stay float32. Worth it
            on such CPUs; elsewhere bfloat16 is emulated (slower, less precise).
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    clip_grad_norm: float | None = 1.0
    patience: int | None = 5
    steps_per_epoch: int | None = None
    seed: int = 0
    deterministic: bool = False
    progress: str = "auto"
    max_time: float | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        def integer(name, allow_none=False, allow_zero=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if allow_zero else 1):
                kind = "non-negative" if allow_zero else "positive"
                raise ConfigError(f"{name} must be a {kind} integer, got {v!r}")

        integer("epochs")
        integer("batch_size")
        integer("patience", allow_none=True)
        integer("steps_per_epoch", allow_none=True)
        integer("warmup_steps", allow_zero=True)
        for name, allow_zero in (("lr", False), ("weight_decay", True)):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
                or (v == 0 and not allow_zero)
            ):
                raise ConfigError(
                    f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {v!r}"
                )
        if self.clip_grad_norm is not None and (
            isinstance(self.clip_grad_norm, bool)
            or not isinstance(self.clip_grad_norm, (int, float))
            or not self.clip_grad_norm > 0
        ):
            raise ConfigError(
                f"clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}"
            )
        if self.max_time is not None and (
            isinstance(self.max_time, bool)
            or not isinstance(self.max_time, (int, float))
            or not math.isfinite(self.max_time)
            or not self.max_time > 0
        ):
            raise ConfigError(f"max_time must be a positive number of seconds or None, got {self.max_time!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "budget" and self.max_time is None:
            raise ConfigError("schedule 'budget' decays the learning rate over max_time: set max_time")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.progress not in PROGRESS:
            raise ConfigError(f"progress must be one of {', '.join(PROGRESS)}, got {self.progress!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"deterministic must be true or false, got {self.deterministic!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def coerce(cls, train: TrainConfig | dict | None) -> TrainConfig:
        """The defaults for None, a strict ``from_dict`` for a mapping, the config itself."""
        if train is None:
            return cls()
        if isinstance(train, dict):
            return from_dict(cls, train)
        if not isinstance(train, cls):
            raise TypeError(f"expected train to be a TrainConfig or dict, got {type(train).__name__}")
        return train


def from_dict(cls, data: dict):
    """``cls(**data)`` for a dataclass, with unknown keys an error that names them."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**data)
