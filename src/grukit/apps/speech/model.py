"""The speech recognizer's network: waveform -> features -> ``grukit.GRU`` -> words.

Shapes: N utterances, S samples, T feature frames, F features per frame, k frames stacked,
T' = T // k GRU steps, H hidden, D directions, C classes (classify) or V = words + 1 (CTC).

    f_t   = Features(wave)                          (N, T, F)   log-mel or MFCC, 10 ms frames
    f_t   = norm(f_t)                               per utterance, or with the training set's
                                                    mean and deviation ("global": streamable)
    f_t   = SpecAugment(f_t)                        training only
    u_s   = [f_{ks}, ..., f_{ks+k-1}]               (N, T', kF) k frames stacked (Sak et al. 2015)
    h_s   = GRU(u_s)                                (N, T', DH)
  classify:    c = pool_s(h_s)                      mean, max, last or attention (Bahdanau-style
                                                    scores v^T tanh(W h_s), masked softmax)
               logits = W_out dropout(c) + b        (N, C)
  transcribe:  logits_s = W_out dropout(h_s) + b    (N, T', V), CTC with blank id 0

The features are part of the module: they run wherever the model runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from grukit.modules import GRU
from grukit.train.config import ConfigError

__all__ = ["SpeechConfig", "SpeechNet", "TASKS", "POOLINGS", "NORMS"]

TASKS = ("classify", "transcribe")
POOLINGS = ("attention", "mean", "max", "last")
NORMS = ("utterance", "global")
FEATURES = ("logmel", "mfcc")
# SpecAugment's frequency masks for transcribe are each up to this share of a frame's features
# wide: 8 of 40 log-mel bands (Park et al. mask up to 27 of 80), 3 of 13 MFCCs; masks up to 8
# wide covered most of 13 MFCCs, and with them CTC stayed on its all-blank plateau in 2 of 6
# runs on FSDD digit strings, with 3 in 0 of 4 (docs/speech.md)
FREQ_MASK_SHARE = 0.2
# classify's masks: up to 8 features wide, with which its FSDD results were measured (on 13
# MFCCs, 3 gave 0.993 on the official split where 8 gave 0.997, one seed each)
CLASSIFY_FREQ_MASK = 8
# volume perturbation (dB) of models on global statistics: FSDD's quietest speaker is 20 dB
# below the others
VOLUME_DB = 20.0


@dataclass
class SpeechConfig:
    """The recognizer's features and network. Every field is saved with the model.

    Attributes:
        task: "classify" (one word per recording) or "transcribe" (strings of words, CTC).
        features: "logmel" (log mel filterbank energies) or "mfcc". None: mfcc. With FSDD's six
            speakers, 13 MFCCs (normalised per utterance) took leave-one-speaker-out accuracy
            from 0.742 to 0.854 and the official split from 0.990 to 0.997, and CTC on digit
            strings (with volume perturbation) reached 0.7-1.4% digit errors on held-out
            recordings and 0.4-3.6% on a held-out speaker over four seeds, where log-mels
            reached 0.7% and 7.0% (docs/speech.md): the cepstrum's first coefficients keep the
            spectral envelope and drop the pitch harmonics, which differ between voices.
        sample_rate: the rate audio is resampled to before the features.
        n_mels: mel bands; n_mfcc: cepstral coefficients kept (features="mfcc").
        norm: "utterance" (each recording to mean 0, variance 1 per feature) or "global" (the
            training set's statistics: needed to stream). None: utterance for a bidirectional
            network, global for a unidirectional one.
        stack: k consecutive 10 ms frames fed as one GRU step (fewer steps, same information).
        hidden_size, num_layers: the GRU's H and L.
        bidirectional: None: True for classify, False for transcribe (a streamable model).
        pooling: how classify turns the sequence into one vector.
        reset_after, layer_norm, zoneout, recurrent_dropout, weight_dropout, dropout:
            grukit.GRU's formulation and variants.
        output_dropout: before the output layer.
        spec_augment: time and frequency masking in training (Park et al. 2019): two
            frequency masks each up to ``freq_mask`` features wide, two time masks each up to 5%
            of the frames.
        freq_mask: the widest frequency mask. None: 8 for classify, a fifth of the features
            for transcribe (8 of 40 log-mels, 3 of 13 MFCCs: wider ones kept CTC on its
            all-blank plateau).
        speed_perturb: in training, each recording is played at a speed drawn from
            {1 - p, 1, 1 + p} (Ko et al. 2015); 0 turns it off.
        noise_snr: in training, half the recordings get white noise at a signal-to-noise ratio
            drawn uniformly between this many dB and 40 dB (None: no noise). On FSDD's official
            split it took the GRU from 0.967 to 0.990 (docs/speech.md): recordings differ in
            their noise floor, which the log-mel features see in every pause.
        volume_perturb: in training, each recording's level changes by a gain drawn uniformly
            in [-v, +v] dB (Kaldi's volume perturbation), so that a model on global statistics
            hears quiet and loud speakers alike (FSDD's theo speaks 20 dB below the others).
            None: 20 dB on global statistics, 0 on per-utterance ones (which remove the level).
    """

    task: str = "classify"
    features: str | None = None
    sample_rate: int = 8000
    n_mels: int = 40
    n_mfcc: int = 13
    norm: str | None = None
    stack: int = 2
    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool | None = None
    pooling: str = "attention"
    reset_after: bool = False
    layer_norm: bool = False
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0
    dropout: float = 0.1
    output_dropout: float = 0.1
    spec_augment: bool = True
    freq_mask: int | None = None
    speed_perturb: float = 0.1
    noise_snr: float | None = 10.0
    volume_perturb: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("task", TASKS), ("pooling", POOLINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.features is not None and self.features not in FEATURES:
            raise ConfigError(
                f"features must be one of {', '.join(FEATURES)} (or None), got {self.features!r}"
            )
        if self.norm is not None and self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)} (or None), got {self.norm!r}")
        for name in ("sample_rate", "n_mels", "n_mfcc", "stack", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("zoneout", "recurrent_dropout", "weight_dropout", "dropout", "output_dropout"):
            _probability(name, getattr(self, name))
        if (
            not isinstance(self.speed_perturb, (int, float))
            or isinstance(self.speed_perturb, bool)
            or not 0 <= self.speed_perturb < 0.5
        ):
            raise ConfigError(f"speed_perturb must be in [0, 0.5), got {self.speed_perturb!r}")
        if self.volume_perturb is not None and (
            isinstance(self.volume_perturb, bool)
            or not isinstance(self.volume_perturb, (int, float))
            or not 0 <= self.volume_perturb <= 40
        ):
            raise ConfigError(f"volume_perturb must be None or in [0, 40] dB, got {self.volume_perturb!r}")
        if self.noise_snr is not None and (
            isinstance(self.noise_snr, bool)
            or not isinstance(self.noise_snr, (int, float))
            or not -10 <= self.noise_snr <= 40
        ):
            raise ConfigError(f"noise_snr must be None or in [-10, 40] dB, got {self.noise_snr!r}")
        if self.freq_mask is not None and (
            isinstance(self.freq_mask, bool) or not isinstance(self.freq_mask, int) or self.freq_mask < 0
        ):
            raise ConfigError(f"freq_mask must be None or a non-negative integer, got {self.freq_mask!r}")
        for name in ("reset_after", "layer_norm", "spec_augment"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.bidirectional is not None and not isinstance(self.bidirectional, bool):
            raise ConfigError(f"bidirectional must be true, false or None, got {self.bidirectional!r}")
        if self.feature_kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ConfigError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")

    @property
    def directions(self) -> bool:
        """Whether the GRU is bidirectional, with None resolved by the task."""
        return self.task == "classify" if self.bidirectional is None else self.bidirectional

    @property
    def feature_kind(self) -> str:
        """``features`` with None resolved: mfcc."""
        return "mfcc" if self.features is None else self.features

    @property
    def norm_kind(self) -> str:
        """``norm`` with None resolved: utterance for bidirectional networks, else global."""
        if self.norm is not None:
            return self.norm
        return "utterance" if self.directions else "global"

    @property
    def freq_mask_width(self) -> int:
        """``freq_mask`` with None resolved by the task (``CLASSIFY_FREQ_MASK``, or
        ``FREQ_MASK_SHARE`` of the features for transcribe)."""
        if self.freq_mask is not None:
            return self.freq_mask
        if self.task == "classify":
            return CLASSIFY_FREQ_MASK
        return freq_mask_share(self.feature_config().dim)

    def resolved(self) -> dict:
        """Every field, with the defaults that follow the task or the normalisation resolved:
        what a saved model or a run's metrics record, so that a later version's defaults cannot
        change their meaning."""
        return dict(
            self.__dict__,
            features=self.feature_kind,
            norm=self.norm_kind,
            bidirectional=self.directions,
            volume_perturb=self.volume_db,
            freq_mask=self.freq_mask_width,
        )

    @property
    def volume_db(self) -> float:
        """``volume_perturb`` with None resolved: ``VOLUME_DB`` on global statistics, else 0."""
        if self.volume_perturb is not None:
            return float(self.volume_perturb)
        return VOLUME_DB if self.norm_kind == "global" else 0.0

    @property
    def streamable(self) -> bool:
        """A unidirectional network on global statistics reads audio as it comes."""
        return not self.directions and self.norm_kind == "global"

    def feature_config(self):
        from grukit.apps.speech.features import FeatureConfig

        return FeatureConfig(
            kind=self.feature_kind, sample_rate=self.sample_rate, n_mels=self.n_mels, n_mfcc=self.n_mfcc
        )

    def steps(self, samples: int) -> int:
        """GRU steps of a recording of ``samples`` samples: its whole groups of ``stack`` frames."""
        from grukit.apps.speech.features import num_frames

        return num_frames(samples, self.feature_config()) // self.stack

    def step_end(self, s: int) -> int:
        """The sample just past the last frame of step ``s`` (from 0): the audio step ``s`` needs."""
        fc = self.feature_config()
        return (self.stack * (s + 1) - 1) * fc.hop_length + fc.win_length


def freq_mask_share(F: int) -> int:
    """``FREQ_MASK_SHARE`` of ``F`` features, rounded, at least 1 (8 of 40, 3 of 13)."""
    return max(1, round(FREQ_MASK_SHARE * F))


def _probability(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v < 1:
        raise ConfigError(f"{name} must be a probability in [0, 1), got {v!r}")


def stack_frames(f: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(N, T, F) frames and their counts -> (N, T // k, kF) and counts // k (a partial group of
    fewer than k frames at the end is dropped)."""
    if k == 1:
        return f, lengths
    N, T, F = f.shape
    T2 = T // k
    return f[:, : T2 * k].reshape(N, T2, k * F), torch.div(lengths, k, rounding_mode="floor")


class SpeechNet(nn.Module):
    """The network of :class:`~grukit.apps.speech.GRUSpeechRecognizer` with ``outputs`` classes
    (classify) or ``outputs`` CTC symbols, blank included (transcribe)."""

    def __init__(self, cfg: SpeechConfig, outputs: int) -> None:
        super().__init__()
        from grukit.apps.speech.features import Features, SpecAugment

        self.cfg = cfg
        fc = cfg.feature_config()
        self.features = Features(fc)
        F = fc.dim
        # the training set's per-feature mean and deviation (norm="global"); set by fit
        self.register_buffer("feat_mean", torch.zeros(F))
        self.register_buffer("feat_std", torch.ones(F))
        self.augment = SpecAugment(freq_width=cfg.freq_mask_width) if cfg.spec_augment else None
        D = 2 if cfg.directions else 1
        H = cfg.hidden_size
        self.gru = GRU(
            cfg.stack * F,
            H,
            num_layers=cfg.num_layers,
            batch_first=True,
            bidirectional=cfg.directions,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            reset_after=cfg.reset_after,
            layer_norm=cfg.layer_norm,
            zoneout=cfg.zoneout,
            recurrent_dropout=cfg.recurrent_dropout,
            weight_dropout=cfg.weight_dropout,
        )
        if cfg.task == "classify" and cfg.pooling == "attention":
            self.att = nn.Sequential(nn.Linear(D * H, H), nn.Tanh(), nn.Linear(H, 1, bias=False))
        else:
            self.att = None
        self.drop = nn.Dropout(cfg.output_dropout)
        self.head = nn.Linear(D * H, outputs)

    # -- pieces (the stream runs them one at a time) ---------------------------------------------

    def normalize(self, f: Tensor, lengths: Tensor) -> Tensor:
        """(N, T, F) -> normalised features, padding left at 0."""
        if self.cfg.norm_kind == "utterance":
            from grukit.apps.speech.features import utterance_norm

            return utterance_norm(f, lengths)
        f = (f - self.feat_mean) / self.feat_std
        mask = torch.arange(f.shape[1], device=f.device)[None, :] < lengths[:, None]  # (N, T)
        return f * mask[..., None]

    def frames(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(N, S) audio -> normalised, augmented (in training), stacked GRU inputs (N, T', kF)."""
        f, n = self.features(wave, lengths)  # (N, T, F), (N,)
        f = self.normalize(f, n)
        if self.augment is not None and self.training:
            f = self.augment(f, n)
        return stack_frames(f, n, self.cfg.stack)

    def sequence(self, u: Tensor, n: Tensor) -> Tensor:
        """GRU over stacked frames (N, T', kF) with counts n -> (N, T', DH), 0 past each end."""
        if self.cfg.directions and bool((n < u.shape[1]).any()):
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

            packed = pack_padded_sequence(u, n.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.gru(packed)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=u.shape[1])
            return h
        h, _ = self.gru(u)  # unidirectional: steps past the end never reach the valid ones
        mask = torch.arange(u.shape[1], device=u.device)[None, :] < n[:, None]
        return h * mask[..., None]

    def pool(self, h: Tensor, n: Tensor) -> Tensor:
        """(N, T', DH) -> (N, DH) over each utterance's valid steps."""
        T = h.shape[1]
        mask = torch.arange(T, device=h.device)[None, :] < n[:, None]  # (N, T')
        kind = self.cfg.pooling
        if kind == "mean":
            return h.sum(1) / n.clamp(min=1)[:, None].to(h.dtype)
        if kind == "max":
            return h.masked_fill(~mask[..., None], -math.inf).amax(1).nan_to_num(0.0, neginf=0.0)
        if kind == "last":
            idx = (n - 1).clamp(min=0)
            last = h[torch.arange(h.shape[0], device=h.device), idx]
            if self.cfg.directions:  # the backward direction's summary is at step 0
                H = self.cfg.hidden_size
                last = torch.cat([last[:, :H], h[:, 0, H:]], dim=1)
            return last
        scores = self.att(h)[..., 0].masked_fill(~mask, -math.inf)  # (N, T')
        w = torch.softmax(scores, dim=1).nan_to_num(0.0)
        return torch.einsum("nt,nth->nh", w, h)

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(N, S) audio and its lengths -> classify: logits (N, C) and the step counts (N,);
        transcribe: logits (N, T', V) and the step counts."""
        u, n = self.frames(wave, lengths)
        h = self.sequence(u, n)
        if self.cfg.task == "classify":
            return self.head(self.drop(self.pool(h, n))), n
        return self.head(self.drop(h)), n
