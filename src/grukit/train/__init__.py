"""A model-agnostic trainer: progress, early stopping, schedules, clipping, seeds, atomic
checkpoints with resume, learning curves, and DDP under ``torchrun``."""

from grukit.train.config import ConfigError, TrainConfig
from grukit.train.distributed import Context, context
from grukit.train.trainer import Trainer, TrainingError, TrainResult

__all__ = ["TrainConfig", "ConfigError", "Trainer", "TrainResult", "TrainingError", "Context", "context"]
