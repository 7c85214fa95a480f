"""Recordings as training batches: augmentation on the waveform, padding, and the loss.

A batch is ``(wave (N, S), lengths (N,), targets)`` with recordings zero-padded to the longest;
``targets`` is a class id per recording (classify) or ``(labels (sum U,), label_lengths (N,))``,
the word ids 1..V-1 of every transcript concatenated (transcribe, CTC; 0 is the blank).

Augmentation in training (Ko et al. 2015 speed perturbation; additive white noise), drawn from
torch's generator so that ``torch.manual_seed`` (the trainer's seed, restored on resume)
reproduces a run:

    factor ~ uniform{1 - p, 1, 1 + p}          wave <- resampled to play factor times faster
    g ~ U[-v, v] dB                            wave <- wave * 10^(g / 20)
    with probability 1/2: snr ~ U[noise_snr, 40] dB, wave <- wave + white noise at that SNR
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["Recordings", "SpeechLoss", "pad", "ctc_min_steps"]


def pad(waves: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Recordings (S_i,) -> (N, max S_i) float32 zero-padded, and their lengths (N,)."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0)
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return out, lengths


class Recordings(Dataset):
    """Recordings with their targets (class ids, or word-id arrays for CTC); ``augment`` turns
    on the training-time perturbations of the module docstring."""

    def __init__(
        self,
        waves: list[np.ndarray],
        targets: list,
        *,
        task: str,
        augment: bool = False,
        speed: float = 0.0,
        noise_snr: float | None = None,
        volume: float = 0.0,
    ) -> None:
        self.waves, self.targets, self.task = waves, targets, task
        self.augment, self.speed, self.noise_snr, self.volume = augment, speed, noise_snr, volume

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int):
        wave = self.waves[i]
        if self.augment:
            from grukit.data.audio import add_noise, change_speed

            if self.speed:
                factor = (1 - self.speed, 1.0, 1 + self.speed)[int(torch.randint(3, ()))]
                if factor != 1.0:
                    wave = change_speed(wave, factor)
            if self.volume:
                gain = self.volume * (2 * float(torch.rand(())) - 1)
                wave = (wave * 10 ** (gain / 20)).astype(np.float32)
            if self.noise_snr is not None and float(torch.rand(())) < 0.5:
                snr = self.noise_snr + (40 - self.noise_snr) * float(torch.rand(()))
                seed = int(torch.randint(2**31 - 1, ()))
                wave = add_noise(wave, snr, np.random.default_rng(seed))
        return wave, self.targets[i]

    def collate(self, items):
        waves, targets = zip(*items)
        wave, lengths = pad(list(waves))
        if self.task == "classify":
            return wave, lengths, torch.tensor(targets, dtype=torch.long)
        label_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        labels = torch.from_numpy(np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]))
        return wave, lengths, (labels, label_lengths)


class SpeechLoss:
    """The trainer's loss: cross-entropy per recording (classify), or the CTC negative log
    likelihood per recording in nats (transcribe; ``zero_infinity`` drops a recording too short
    for its transcript instead of poisoning the batch: fit checks lengths beforehand)."""

    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, net, batch) -> tuple[Tensor, int]:
        wave, lengths, targets = batch
        device = next(net.parameters()).device
        wave, lengths = wave.to(device), lengths.to(device)
        logits, steps = net(wave, lengths)
        n = wave.shape[0]
        if self.task == "classify":
            return F.cross_entropy(logits, targets.to(device)), n
        labels, label_lengths = targets
        logp = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T', N, V)
        loss = F.ctc_loss(
            logp,
            labels.to(device),
            steps,
            label_lengths.to(device),
            blank=0,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / n, n


def ctc_min_steps(labels) -> int:
    """The fewest CTC steps that can emit ``labels``: one per label, plus a blank between each
    pair of equal neighbours."""
    labels = list(labels)
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)
