"""Recognition of live audio: chunks in, words out as soon as the model emits them.

    stream = recognizer.stream()
    for chunk in microphone():                 # any sizes, at the model's sample rate
        for word in stream.push(chunk):
            print(word.text, word.time)
    stream.finish()

Each chunk goes through the same pieces as a whole recording, with every state carried: the
feature frames not yet complete (:class:`~grukit.apps.speech.features.FeatureStream`), the
frames not yet stacked, and the GRU's ``h`` (:meth:`grukit.GRU.stream`). Normalisation uses the
training set's statistics (``norm="global"``), which need no future. So the stream's steps are
the steps of the whole recording, and the words it emits are the best-path (greedy) transcript
of the whole recording:

    transcribe: at step s, l_s = argmax_v p_s(v); a word is emitted when l_s is not the blank and
                differs from l_{s-1} (CTC's collapse, done online)
    classify:   the class is emitted by finish(), pooled over every step (as offline)

A word's ``time`` is the end, in seconds of audio, of the last frame of the step that emitted it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grukit.data.series import DataError
from grukit.train.config import ConfigError

__all__ = ["SpeechStream", "Word"]


@dataclass(frozen=True)
class Word:
    """A recognised word: its text, the audio time (s) of the step that emitted it, that
    step's posterior probability of the word (transcribe) or the class probability (classify)."""

    text: str
    time: float
    probability: float


class SpeechStream:
    """Reads a recognizer's audio in chunks (module docstring). One utterance at a time:
    :meth:`finish` ends it and :meth:`reset` starts another."""

    def __init__(self, recognizer) -> None:
        from grukit.apps.speech.features import FeatureStream

        cfg = recognizer.config
        if not cfg.streamable:
            why = "it is bidirectional" if cfg.directions else "it normalises each whole recording"
            raise ConfigError(
                f"this model cannot stream: {why}; train with bidirectional=False and "
                "norm='global' (the default for a unidirectional model)"
            )
        self.rec, self.cfg = recognizer, cfg
        self.net = recognizer.net_.eval()
        self.fc = cfg.feature_config()
        self._features = FeatureStream(self.net.features)
        self._gru = self.net.gru.stream()
        self.reset()

    def reset(self) -> None:
        """Forget the utterance in progress."""
        self._features.reset()
        self._gru.state = None
        self._frames = torch.zeros(0, self.fc.dim)  # normalised frames not yet stacked
        self._steps = 0
        self._last = 0  # the label of the previous step (0: blank)
        self._hidden: list[torch.Tensor] = []  # classify: every step's h, pooled by finish()
        self.samples = 0

    @property
    def seconds(self) -> float:
        """Audio read so far, in seconds."""
        return self.samples / self.cfg.sample_rate

    def _step_time(self, s: int) -> float:
        """End of step ``s``'s last frame, in seconds."""
        return self.cfg.step_end(s) / self.cfg.sample_rate

    @torch.no_grad()
    def push(self, chunk) -> list[Word]:
        """Read ``chunk`` (1-D samples at the model's rate, any length); the words it completes."""
        x = np.asarray(chunk, dtype=np.float32)
        if x.ndim != 1:
            raise DataError(f"a stream chunk must be 1-D samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError("a stream chunk has non-finite samples")
        self.samples += len(x)
        f = self._features.push(x)  # (T_new, F)
        if not len(f):
            return []
        f = (f - self.net.feat_mean) / self.net.feat_std
        frames = torch.cat([self._frames, f]) if len(self._frames) else f
        k = self.cfg.stack
        n = len(frames) // k
        self._frames = frames[n * k :]
        if not n:
            return []
        u = frames[: n * k].reshape(n, k * self.fc.dim)  # (T', kF)
        h = self._gru(u)  # (T', H)
        first = self._steps
        self._steps += n
        if self.cfg.task == "classify":
            self._hidden.append(h)
            return []
        logp = torch.log_softmax(self.net.head(h).double(), dim=-1)  # (T', V)
        words = []
        best, label = logp.max(dim=-1)
        for j in range(n):
            v = int(label[j])
            if v != 0 and v != self._last:
                words.append(Word(self.rec.labels_[v - 1], self._step_time(first + j), float(best[j].exp())))
            self._last = v
        return words

    @torch.no_grad()
    def finish(self) -> list[Word]:
        """End the utterance: classify emits its word (transcribe has emitted everything; a last
        group of fewer than ``stack`` frames is dropped, as in a whole-recording pass)."""
        words = []
        if self.cfg.task == "classify" and self._hidden:
            h = torch.cat(self._hidden)[None]  # (1, T', H)
            n = torch.tensor([h.shape[1]])
            p = torch.softmax(self.net.head(self.net.pool(h, n)).double(), dim=-1)[0]
            k = int(p.argmax())
            words.append(Word(self.rec.labels_[k], self._step_time(self._steps - 1), float(p[k])))
        self.reset()
        return words
