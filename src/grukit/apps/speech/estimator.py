"""``GRUSpeechRecognizer``: words (classify) or strings of words (transcribe, CTC) from audio.

    rec = GRUSpeechRecognizer(task="classify").fit(waves, labels)     # or file paths
    rec.predict(["yes.wav"])                  # ["yes"]
    rec.recognize(["yes.wav"])                # [Recognition(text="yes", confidence=0.998)]
    rec.evaluate(test_waves, test_labels)     # accuracy and confusion matrix, or WER

Audio is a sequence of recordings: 1-D arrays at ``sample_rate``, or paths of WAV/FLAC/OGG
files (mixed to mono and resampled; an unreadable file among many is skipped and counted), or
:class:`~grukit.data.speech.Utterance` records (whose ``text`` are the labels).

Training runs on the shared :class:`~grukit.train.Trainer` (progress bars, early stopping on
the validation loss, atomic checkpoints, exact resume, ``torchrun``): cross-entropy per
recording (classify) or the CTC negative log likelihood (transcribe). Transcripts are decoded
best-path ("greedy") or by prefix beam search ("beam"); a transcript's confidence is its
probability under the model, p(words | audio), the sum over every alignment (CTC's forward
algorithm), whichever decoder found it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

import grukit
from grukit.apps import model_folder
from grukit.apps.contract import NotFittedError
from grukit.apps.speech.model import SpeechConfig, SpeechNet
from grukit.data.series import DataError
from grukit.train.config import ConfigError, TrainConfig

__all__ = ["GRUSpeechRecognizer", "Recognition", "SPEECH_TRAIN_DEFAULTS", "TRANSCRIBE_BATCH", "DECODERS"]

FORMAT = "grukit.speech/1"
# 64 recordings per batch, Adam at 3e-3 on a cosine schedule over 40 epochs, early stopping
# after 12 flat epochs (the validation loss of a 10% share of FSDD is noisy: 8 stopped too soon)
SPEECH_TRAIN_DEFAULTS = {
    "epochs": 40,
    "batch_size": 64,
    "lr": 3e-3,
    "schedule": "cosine",
    "clip_grad_norm": 1.0,
    "patience": 12,
}
DECODERS = ("greedy", "beam")
INFER_BATCH = 64  # recordings per forward call at inference (sorted by length: little padding)


@dataclass(frozen=True)
class Recognition:
    """One recording's result: the word (classify) or transcript, and its probability."""

    text: str
    confidence: float


# CTC leaves its all-blank plateau after a number of updates more than of epochs: batches of 16
# strings got out within 4 epochs of FSDD digit strings where batches of 64 took over 6
TRANSCRIBE_BATCH = 16


def _train_config(train, task: str) -> TrainConfig:
    if train is None or isinstance(train, dict):
        defaults = dict(SPEECH_TRAIN_DEFAULTS)
        if task == "transcribe":
            defaults["batch_size"] = TRANSCRIBE_BATCH
        return TrainConfig.coerce({**defaults, **(train or {})})
    return TrainConfig.coerce(train)


class GRUSpeechRecognizer:
    """A GRU speech recognizer; hyperparameters are :class:`SpeechConfig`'s fields (keyword-only)
    and ``train`` (a :class:`~grukit.train.TrainConfig` or dict; unnamed fields take
    ``SPEECH_TRAIN_DEFAULTS``, with batches of 16 for transcribe). Fitted attributes: ``labels_`` (classes, or the words of the
    transcripts: output ``i + 1`` is ``labels_[i]``, 0 the CTC blank), ``net_``, ``result_``,
    ``skipped_`` (files that could not be read)."""

    def __init__(self, *, train: TrainConfig | dict | None = None, **hyper) -> None:
        self.config = SpeechConfig(**hyper)
        self.train_config = _train_config(train, self.config.task)

    # -- audio in ------------------------------------------------------------------------------

    @property
    def min_samples(self) -> int:
        """The shortest recording that gives one GRU step: ``stack`` frames."""
        return self.config.step_end(0)

    def _audio(self, audio, labels, what: str, log=None, skip_short: bool = False):
        """(recordings as float32 arrays, their labels or None, skipped [(name, reason)])."""
        from grukit.data.speech import Utterance

        if isinstance(audio, (str, os.PathLike, np.ndarray)) and not (
            isinstance(audio, np.ndarray) and audio.ndim == 2
        ):
            raise DataError(
                f"{what}: expected a sequence of recordings (arrays or file paths), got "
                f"{type(audio).__name__}; wrap one recording in a list"
            )
        items = list(audio)
        if not items:
            raise DataError(f"{what}: no recordings")
        if all(isinstance(a, Utterance) for a in items):
            if labels is None:
                labels = [a.text for a in items]
            items = [a.path for a in items]
        if labels is not None:
            labels = list(labels)
            if len(labels) != len(items):
                raise DataError(f"{what}: {len(items)} recordings but {len(labels)} labels")
        skipped: list[tuple[str, str]] = []
        if all(isinstance(a, (str, os.PathLike)) for a in items):
            from grukit.data.audio import read_many

            waves, kept, skipped = read_many([str(a) for a in items], self.config.sample_rate, log=log)
            if labels is not None:
                labels = [labels[i] for i in kept]
        else:
            waves = []
            for i, a in enumerate(items):
                if isinstance(a, (str, os.PathLike)):
                    raise DataError(f"{what}: mixes file paths and arrays (recording {i}); pass one kind")
                w = np.asarray(a, dtype=np.float32)
                if w.ndim != 1:
                    raise DataError(
                        f"{what}: recording {i} has shape {w.shape}; expected 1-D samples "
                        f"at {self.config.sample_rate} Hz (mix stereo to mono first)"
                    )
                if not np.isfinite(w).all():
                    raise DataError(f"{what}: recording {i} has non-finite samples")
                waves.append(w)
        need = self.min_samples
        short = [i for i, w in enumerate(waves) if len(w) < need]
        if short:
            ms = 1000 * need / self.config.sample_rate
            if not skip_short:
                i = short[0]
                raise DataError(
                    f"{what}: recording {i} has {len(waves[i])} samples, fewer than the "
                    f"{need} ({ms:g} ms) one step of the model reads"
                )
            skipped += [(f"recording {i}", f"shorter than {ms:g} ms") for i in short]
            keep = [i for i in range(len(waves)) if len(waves[i]) >= need]
            waves = [waves[i] for i in keep]
            labels = None if labels is None else [labels[i] for i in keep]
            if not waves:
                raise DataError(f"{what}: every recording is shorter than {ms:g} ms")
        return waves, labels, skipped

    def _targets(self, labels, what: str):
        """Labels as class ids (classify) or word-id arrays (transcribe)."""
        index = {w: i for i, w in enumerate(self.labels_)}
        out = []
        for k, label in enumerate(labels):
            if not isinstance(label, str):
                raise DataError(f"{what}: label {k} is {type(label).__name__}, expected str")
            if self.config.task == "classify":
                if label not in index:
                    raise DataError(
                        f"{what}: label {label!r} (recording {k}) is not one of the "
                        f"{len(index)} training classes"
                    )
                out.append(index[label])
            else:
                ids = []
                for word in label.split():
                    if word not in index:
                        raise DataError(
                            f"{what}: the word {word!r} (recording {k}) is not in the "
                            f"training transcripts' {len(index)} words"
                        )
                    ids.append(index[word] + 1)
                if not ids:
                    raise DataError(f"{what}: recording {k} has an empty transcript")
                out.append(np.array(ids, dtype=np.int64))
        return out

    # -- fitting -------------------------------------------------------------------------------

    def fit(
        self,
        audio,
        labels=None,
        *,
        valid=None,
        valid_fraction: float = 0.1,
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        log=None,
    ) -> GRUSpeechRecognizer:
        """Train on recordings and their labels (words for classify, transcripts for transcribe).
        Validation (early stopping, the best epoch) uses ``valid`` (recordings and labels as a
        pair, or Utterances), else a random ``valid_fraction`` of the training recordings."""
        from grukit.apps.speech.batches import Recordings, SpeechLoss, ctc_min_steps
        from grukit.train.trainer import Trainer

        cfg, tc = self.config, self.train_config
        if (
            isinstance(valid_fraction, bool)
            or not isinstance(valid_fraction, (int, float))
            or not 0 <= valid_fraction < 1
        ):
            raise ConfigError(f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
        waves, labels, skipped = self._audio(audio, labels, "the training recordings", log, skip_short=True)
        if labels is None:
            raise DataError("the training recordings have no labels: pass labels= or Utterances")
        if valid is not None:
            v_audio, v_labels = (valid, None) if not isinstance(valid, tuple) else valid
            v_waves, v_labels, v_skipped = self._audio(
                v_audio, v_labels, "the validation recordings", log, skip_short=True
            )
            skipped += v_skipped
        elif valid_fraction > 0 and len(waves) >= 2:
            order = np.random.default_rng(tc.seed).permutation(len(waves))
            n_val = max(1, int(round(len(waves) * valid_fraction)))
            val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
            v_waves, v_labels = [waves[i] for i in val_idx], [labels[i] for i in val_idx]
            waves, labels = [waves[i] for i in train_idx], [labels[i] for i in train_idx]
        else:
            v_waves = v_labels = None
        if cfg.task == "classify":
            self.labels_ = sorted(set(labels))
            if len(self.labels_) < 2:
                del self.labels_
                raise DataError(
                    f"classify needs at least 2 classes, the training labels have {len(set(labels))}"
                )
        else:
            self.labels_ = sorted({w for t in labels for w in str(t).split()})
        targets = self._targets(labels, "the training labels")
        v_targets = self._targets(v_labels, "the validation labels") if v_labels is not None else None
        torch.manual_seed(tc.seed)
        net = SpeechNet(cfg, len(self.labels_) + (cfg.task == "transcribe"))
        if cfg.task == "transcribe":  # every transcript must fit in its recording's steps
            for k, (w, t) in enumerate(zip(waves, targets)):
                steps = cfg.steps(len(w))
                if steps < ctc_min_steps(t):
                    raise DataError(
                        f"training recording {k} gives {steps} steps, too few for its "
                        f"{len(t)} words; use a smaller stack or longer recordings"
                    )
        if cfg.norm_kind == "global":
            mean, std = self._statistics(net, waves)
            net.feat_mean.copy_(mean)
            net.feat_std.copy_(std)
        self.net_, self.skipped_ = net, skipped
        train = Recordings(
            waves,
            targets,
            task=cfg.task,
            augment=True,
            speed=cfg.speed_perturb,
            noise_snr=cfg.noise_snr,
            volume=cfg.volume_db,
        )
        val = Recordings(v_waves, v_targets, task=cfg.task) if v_waves else None
        trainer = Trainer(net, tc, SpeechLoss(cfg.task), out_dir=out_dir, resume=resume, log=log)
        self.result_ = trainer.fit(train, val)
        net.eval()
        return self

    @torch.no_grad()
    def _statistics(self, net: SpeechNet, waves) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and deviation over every frame of the training recordings."""
        from grukit.apps.speech.batches import pad

        total = total2 = None
        count = 0
        for a in range(0, len(waves), INFER_BATCH):
            wave, lengths = pad(waves[a : a + INFER_BATCH])
            f, n = net.features(wave, lengths)  # (N, T, F); 0 past each end
            f = f.double()
            s, s2 = f.sum((0, 1)), (f * f).sum((0, 1))
            total = s if total is None else total + s
            total2 = s2 if total2 is None else total2 + s2
            count += int(n.sum())
        mean = total / count
        std = (total2 / count - mean * mean).clamp(min=1e-10).sqrt()
        return mean.float(), std.float()

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this GRUSpeechRecognizer is not fitted yet: call fit() or load()")

    @property
    def num_parameters(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.net_.parameters())

    # -- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def _forward(self, waves):
        """Yields (recording index, output) in input order: logits (C,) for classify, per-step
        log-probabilities (T', V) for transcribe; batches of similar lengths."""
        from grukit.apps.speech.batches import pad

        net = self.net_.eval()
        order = np.argsort([len(w) for w in waves], kind="stable")
        out = [None] * len(waves)
        for a in range(0, len(order), INFER_BATCH):
            idx = order[a : a + INFER_BATCH]
            wave, lengths = pad([waves[i] for i in idx])
            logits, steps = net(wave, lengths)
            for j, i in enumerate(idx):
                if self.config.task == "classify":
                    out[i] = logits[j].double()
                else:
                    out[i] = torch.log_softmax(logits[j, : steps[j]].double(), dim=-1)
        return out

    def _check_decoder(self, decode: str, beam_width: int) -> None:
        if decode not in DECODERS:
            raise ConfigError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
        if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
            raise ConfigError(f"beam_width must be a positive integer, got {beam_width!r}")

    def recognize(self, audio, *, decode: str = "beam", beam_width: int = 16, log=None) -> list[Recognition]:
        """The word or transcript of each recording with its probability. Files that cannot be
        read are skipped (and counted in ``log``): pair results with paths through
        :meth:`recognize_files`."""
        self._check_fitted()
        self._check_decoder(decode, beam_width)
        waves, _, _ = self._audio(audio, None, "the recordings", log)
        return [self._result(o, decode, beam_width) for o in self._forward(waves)]

    def recognize_files(self, paths, *, decode: str = "beam", beam_width: int = 16, log=None):
        """[(path, Recognition or None, error or None)] for each file, in order."""
        from grukit.data.audio import read_many

        self._check_fitted()
        self._check_decoder(decode, beam_width)
        paths = [str(p) for p in paths]
        waves, kept, skipped = read_many(paths, self.config.sample_rate, log=log)
        why = dict(skipped)
        results = {}
        ok = [(i, w) for i, w in zip(kept, waves) if len(w) >= self.min_samples]
        for i, w in zip(kept, waves):
            if len(w) < self.min_samples:
                why[paths[i]] = f"shorter than {1000 * self.min_samples / self.config.sample_rate:g} ms"
        if ok:
            for (i, _), o in zip(ok, self._forward([w for _, w in ok])):
                results[i] = self._result(o, decode, beam_width)
        return [(p, results.get(i), why.get(p)) for i, p in enumerate(paths)]

    def _result(self, out: torch.Tensor, decode: str, beam_width: int) -> Recognition:
        if self.config.task == "classify":
            p = torch.softmax(out, dim=-1)
            k = int(p.argmax())
            return Recognition(self.labels_[k], float(p[k]))
        ids = self._decode(out, decode, beam_width)
        return Recognition(" ".join(self.labels_[i - 1] for i in ids), transcript_probability(out, ids))

    def _decode(self, logp: torch.Tensor, decode: str, beam_width: int) -> list[int]:
        from grukit.apps.speech.ctc import beam_decode, greedy_decode

        if decode == "greedy":
            return list(greedy_decode(logp.numpy()))
        return list(beam_decode(logp.numpy(), beam_width=beam_width)[0])

    def predict(self, audio, *, decode: str = "beam", beam_width: int = 16) -> list[str]:
        """The word (classify) or transcript (words joined by spaces) of each recording."""
        return [r.text for r in self.recognize(audio, decode=decode, beam_width=beam_width)]

    def predict_proba(self, audio) -> np.ndarray:
        """classify: class probabilities (N, C) in ``labels_`` order."""
        self._check_fitted()
        if self.config.task != "classify":
            raise ConfigError(
                "predict_proba is for task='classify'; transcribe models give "
                "recognize(...).confidence and frame_posteriors()"
            )
        waves, _, _ = self._audio(audio, None, "the recordings")
        return np.stack([torch.softmax(o, -1).numpy() for o in self._forward(waves)])

    @torch.no_grad()
    def frame_posteriors(self, wave) -> np.ndarray:
        """One recording's posteriors over time, (T', outputs): transcribe, each step's CTC
        distribution (blank first); classify, the class probabilities the model gives having
        heard the recording up to each step (every prefix run as its own recording)."""
        self._check_fitted()
        (w,), _, _ = self._audio([wave], None, "the recording")
        if self.config.task == "transcribe":
            return self._forward([w])[0].exp().numpy()
        from grukit.apps.speech.batches import pad

        ends = [self.config.step_end(s) for s in range(self.config.steps(len(w)))]
        rows = []
        for a in range(0, len(ends), INFER_BATCH):
            wave, lengths = pad([w[:e] for e in ends[a : a + INFER_BATCH]])
            logits, _ = self.net_.eval()(wave, lengths)
            rows.append(torch.softmax(logits.double(), -1))
        return torch.cat(rows).numpy()

    # -- scoring -------------------------------------------------------------------------------

    def evaluate(self, audio, labels=None, *, decode: str = "beam", beam_width: int = 16) -> dict:
        """classify: accuracy, the confusion matrix (rows: truth, columns: prediction, in
        ``labels_`` order) and every prediction; transcribe: word error rate and its parts,
        sentence accuracy, and every transcript."""
        self._check_fitted()
        self._check_decoder(decode, beam_width)
        waves, labels, _ = self._audio(audio, labels, "the evaluation recordings")
        if labels is None:
            raise DataError("evaluate needs labels: pass labels= or Utterances")
        self._targets(labels, "the evaluation labels")  # unknown classes or words: a clear error
        results = [self._result(o, decode, beam_width) for o in self._forward(waves)]
        preds = [r.text for r in results]
        if self.config.task == "classify":
            index = {c: i for i, c in enumerate(self.labels_)}
            C = len(self.labels_)
            confusion = np.zeros((C, C), dtype=np.int64)
            for t, p in zip(labels, preds):
                confusion[index[t], index[p]] += 1
            return {
                "task": "classify",
                "accuracy": float(np.trace(confusion) / len(labels)),
                "recordings": len(labels),
                "classes": list(self.labels_),
                "confusion": confusion.tolist(),
                "predictions": preds,
                "confidences": [r.confidence for r in results],
            }
        from grukit.apps.speech.ctc import error_rates

        rates = error_rates([" ".join(t.split()) for t in labels], preds)
        return {
            "task": "transcribe",
            **rates,
            "recordings": len(labels),
            "predictions": preds,
            "confidences": [r.confidence for r in results],
        }

    def score(self, audio, labels=None) -> float:
        """Accuracy (classify) or word accuracy, 1 - WER (transcribe): higher is better."""
        r = self.evaluate(audio, labels)
        return r["accuracy"] if r["task"] == "classify" else 1.0 - r["wer"]

    # -- streaming -----------------------------------------------------------------------------

    def stream(self):
        """A :class:`~grukit.apps.speech.stream.SpeechStream` that reads audio in chunks and
        emits words as they are recognised (unidirectional models on global statistics)."""
        from grukit.apps.speech.stream import SpeechStream

        self._check_fitted()
        return SpeechStream(self)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path/model.safetensors`` and ``path/speech.json`` in one step."""
        self._check_fitted()
        meta = {
            "format": FORMAT,
            "grukit": grukit.__version__,
            "speech": self.config.resolved(),
            "train": self.train_config.to_dict(),
            "labels": list(self.labels_),
        }
        model_folder.write(path, self.net_, "speech.json", meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GRUSpeechRecognizer:
        """A fitted recognizer from a folder written by :meth:`save` (no pickle anywhere)."""
        with model_folder.reading(path, "speech.json", FORMAT, "speech model") as (meta, weights):
            self = cls(train=meta["train"], **meta["speech"])
            self.labels_ = list(meta["labels"])
            outputs = len(self.labels_) + (self.config.task == "transcribe")
            self.net_ = model_folder.build(path, lambda: SpeechNet(self.config, outputs))
            self.net_.eval()
            self.skipped_ = []
        return self


def transcript_probability(logp: torch.Tensor, ids: list[int]) -> float:
    """p(words | audio): the sum over every CTC alignment of ``ids`` of the per-step
    probabilities in ``logp`` (T', V) (the forward algorithm, through ``ctc_loss``)."""
    import torch.nn.functional as F

    T = logp.shape[0]
    if not ids:  # only the all-blank path
        return float(logp[:, 0].sum().exp())
    nll = F.ctc_loss(
        logp[:, None],
        torch.tensor([ids]),
        torch.tensor([T]),
        torch.tensor([len(ids)]),
        blank=0,
        reduction="sum",
        zero_infinity=False,
    )
    return float(torch.exp(-nll))
