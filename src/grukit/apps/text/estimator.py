"""``GRULanguageModel``: a character- or byte-level GRU language model as an estimator.

    lm = GRULanguageModel(hidden_size=512, train={"max_time": 600}).fit(text)
    lm.evaluate(test_text)["bpc"]                 # bits per character, one pass, state carried
    for piece in lm.generate("The ", 200, temperature=0.8, seed=1):
        print(piece, end="", flush=True)

Training is truncated back-propagation through time over contiguous streams
(:mod:`grukit.apps.text.streams`) on the shared :class:`~grukit.train.Trainer`: progress and early
stopping in bits per token, atomic checkpoints, exact resume, ``torchrun``, a wall-clock budget.

Evaluation reads a text in one pass with the state carried from each window to the next and
scores every token but the first (which has no context):

    bits = - sum_{t >= 2} log2 p(x_t | x_1 .. x_{t-1}),    bpc = bits / (characters - 1)

(bits per byte likewise over the UTF-8 bytes the scored tokens span).

Generation reads the prompt in one pass, then samples one token per step with the state carried
(:mod:`grukit.apps.text.sampling`: compiled steps, no re-reading of the context).
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import torch

import grukit
from grukit.apps import model_folder
from grukit.apps.contract import NotFittedError
from grukit.apps.text.model import LMConfig, LMNet
from grukit.data.series import DataError
from grukit.train.config import ConfigError, TrainConfig

__all__ = ["GRULanguageModel", "LM_TRAIN_DEFAULTS"]

FORMAT = "grukit.lm/1"

# Training defaults for language models (the TrainConfig fields not named keep theirs): 64
# streams of 128 steps, Adam at 2e-3 halved on plateaus, clipping at 0.25 as char-rnn/AWD-LSTM
# do; an epoch is one pass or about a million tokens, whichever is smaller.
LM_TRAIN_DEFAULTS = {
    "epochs": 100,
    "batch_size": 64,
    "lr": 2e-3,
    "schedule": "plateau",
    "clip_grad_norm": 0.25,
    "patience": 6,
}
EPOCH_TOKENS = 1_000_000
EVAL_WINDOW = 2048  # steps per forward call when evaluating (memory only; the state is carried)
CHUNK = 32  # tokens sampled per compiled call while generating (then yielded)


def _train_config(train) -> TrainConfig:
    if train is None or isinstance(train, dict):
        return TrainConfig.coerce({**LM_TRAIN_DEFAULTS, **(train or {})})
    return TrainConfig.coerce(train)


class GRULanguageModel:
    """A GRU language model over characters (``level="char"``) or UTF-8 bytes (``"byte"``).

    Hyperparameters are :class:`~grukit.apps.text.LMConfig`'s fields (keyword-only) and ``train``
    (a :class:`~grukit.train.TrainConfig` or dict; unnamed fields take ``LM_TRAIN_DEFAULTS``).
    Fitted attributes: ``vocab_``, ``net_``, ``result_``.
    """

    def __init__(self, *, train: TrainConfig | dict | None = None, **hyper) -> None:
        self.config = LMConfig(**hyper)
        self.train_config = _train_config(train)

    # -- tokens --------------------------------------------------------------------------------

    def _tokens(self, text, what: str) -> np.ndarray:
        """``text`` (str, or bytes in byte mode) as token ids (int64)."""
        vocab = self.vocab_
        if isinstance(text, (bytes, bytearray, memoryview)):
            if vocab.level != "byte":
                raise DataError(
                    f"{what}: bytes are for level='byte'; this model has level={vocab.level!r} (pass str)"
                )
            return np.frombuffer(bytes(text), dtype=np.uint8).astype(np.int64)
        if not isinstance(text, str):
            raise DataError(f"{what}: expected str (or bytes with level='byte'), got {type(text).__name__}")
        return vocab.encode(text, what=what)

    # -- fitting -------------------------------------------------------------------------------

    def fit(
        self,
        text,
        *,
        valid=None,
        valid_fraction: float = 0.1,
        also=(),
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        log=None,
    ) -> GRULanguageModel:
        """Train on ``text`` (str; bytes with ``level="byte"``). Validation (early stopping, the
        best epoch) uses ``valid``, else the last ``valid_fraction`` of ``text`` (0: none). In char
        mode the vocabulary is the characters of ``text``, ``valid`` and the texts in ``also``
        (a test text scored later), as a corpus's vocabulary is. With ``out_dir``, checkpoints,
        ``history.json`` and ``learning_curves.png`` go there and ``resume`` continues an
        interrupted run."""
        from grukit.apps.text.streams import StreamBatches, TBPTTLoss
        from grukit.data.text import Vocabulary
        from grukit.train.trainer import Trainer

        cfg, tc = self.config, self.train_config
        if (
            isinstance(valid_fraction, bool)
            or not isinstance(valid_fraction, (int, float))
            or not 0 <= valid_fraction < 1
        ):
            raise ConfigError(f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
        if not len(text):
            raise DataError("the training text is empty")
        if valid is None and valid_fraction > 0:
            cut = len(text) - int(len(text) * valid_fraction)
            text, valid = text[:cut], text[cut:]
        if cfg.level == "byte":
            vocab = Vocabulary.bytes()
        else:
            if not isinstance(text, str):
                raise DataError(
                    f"level='char' trains on str, got {type(text).__name__}; use level='byte' for raw bytes"
                )
            others = [t for t in (valid, *also) if isinstance(t, str) and t]
            vocab = Vocabulary.from_text("".join([text, *others]), "char", unknown=cfg.unknown)
        self.vocab_ = vocab
        train_ids = self._tokens(text, "the training text")
        need = cfg.bptt + 1
        if len(train_ids) < need:
            del self.vocab_
            raise DataError(
                f"the training text has {len(train_ids)} tokens, fewer than one training "
                f"window (bptt + 1 = {need}); use a longer text or a smaller --bptt"
            )
        from grukit.train.distributed import context

        # batch_size streams per process: under torchrun each process trains on its share
        streams = min(tc.batch_size * context().world_size, len(train_ids) // need)
        windows = None
        if tc.steps_per_epoch is not None:
            windows = tc.steps_per_epoch
        elif len(train_ids) > EPOCH_TOKENS:
            windows = max(1, EPOCH_TOKENS // (streams * cfg.bptt))
        train = StreamBatches(train_ids, streams, cfg.bptt, windows)
        val = None
        if valid is not None and len(valid):
            valid_ids = self._tokens(valid, "the validation text")
            if len(valid_ids) >= 2:
                val = StreamBatches(valid_ids, max(1, min(streams, len(valid_ids) // need)), cfg.bptt)
        torch.manual_seed(tc.seed)
        self.net_ = LMNet(cfg, vocab.size)
        trainer = Trainer(self.net_, tc, TBPTTLoss(), out_dir=out_dir, resume=resume, log=log)
        self.result_ = trainer.fit(train, val)
        self.net_.eval()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this GRULanguageModel is not fitted yet: call fit() or load()")

    @property
    def num_parameters(self) -> int:
        """Trainable parameters (a tied matrix counted once)."""
        self._check_fitted()
        return sum(p.numel() for p in self.net_.parameters())

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, text) -> dict:
        """Bits per character and per byte of ``text``, read in one pass (module docstring)."""
        self._check_fitted()
        ids = self._tokens(text, "the evaluation text")
        if len(ids) < 2:
            raise DataError(f"the evaluation text needs at least 2 tokens, got {len(ids)}")
        net = self.net_.eval()
        x = torch.from_numpy(ids)[None]  # (1, M)
        h, bits = None, 0.0
        for a in range(0, len(ids) - 1, EVAL_WINDOW):
            b = min(a + EVAL_WINDOW, len(ids) - 1)
            logits, h = net(x[:, a:b], h)  # (1, T, V)
            logp = torch.log_softmax(logits[0].double(), dim=-1)  # (T, V)
            bits -= logp.gather(1, x[0, a + 1 : b + 1, None]).sum().item() / math.log(2)
        scored = self.vocab_.decode(ids[1:]) if self.vocab_.level == "char" else None
        if self.vocab_.level == "byte":
            n_bytes = len(ids) - 1
            # characters whose first byte is scored: every UTF-8 byte not of the form 10xxxxxx
            n_chars = int(np.count_nonzero((ids[1:] & 0xC0) != 0x80))
        else:
            n_chars = len(ids) - 1
            n_bytes = len(scored.encode("utf-8"))
        return {
            "bits": bits,
            "tokens": len(ids) - 1,
            "characters": n_chars,
            "bytes": n_bytes,
            "bpc": bits / max(n_chars, 1),
            "bits_per_byte": bits / max(n_bytes, 1),
            "level": self.vocab_.level,
        }

    @torch.no_grad()
    def next_token_probs(self, prompt) -> np.ndarray:
        """p(next token | prompt), shape (V,), in the vocabulary's order."""
        self._check_fitted()
        ids = self._prompt(prompt)
        logits, _ = self.net_.eval()(torch.from_numpy(ids)[None])
        return torch.softmax(logits[0, -1].double(), dim=-1).numpy()

    # -- generation ----------------------------------------------------------------------------

    def _prompt(self, prompt) -> np.ndarray:
        if prompt is None or (not isinstance(prompt, (bytes, bytearray)) and prompt == ""):
            return np.array([self._start_token()], dtype=np.int64)
        ids = self._tokens(prompt, "the prompt")
        if not len(ids):
            return np.array([self._start_token()], dtype=np.int64)
        return ids

    def _start_token(self) -> int:
        """What an empty prompt starts from: a newline, else a space, else token 0."""
        for s in ("\n", " "):
            try:
                return int(self.vocab_.encode(s)[0])
            except DataError:
                continue
        return 0

    @torch.no_grad()
    def generate(
        self,
        prompt="",
        length: int = 200,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        samples: int = 1,
    ) -> Iterator:
        """Yield generated text as it is sampled: ``str`` pieces, or with ``samples`` > 1 lists of
        ``samples`` pieces (one per sample). At most ``length`` tokens per sample; a sample ends
        early at the first occurrence of a ``stop`` string (not included). The same ``seed`` gives
        the same text. Sampling rules: :func:`grukit.apps.text.sampling.sample_reference`."""
        from grukit.apps.text.sampling import Sampler, check_sampling

        self._check_fitted()
        check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
        for name, v in (("length", length), ("samples", samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "length" else 1):
                raise ConfigError(
                    f"{name} must be a {'non-negative' if name == 'length' else 'positive'} "
                    f"integer, got {v!r}"
                )
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) or not s for s in stops):
            raise ConfigError(f"stop must be a non-empty string or a list of them, got {stop!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
        ids = self._prompt(prompt)
        return self._generate(
            ids,
            length,
            dict(temperature=temperature, top_k=top_k, top_p=top_p),
            np.random.default_rng(seed),
            stops,
            samples,
            Sampler,
        )

    def _generate(self, ids, length, rule, rng, stops, samples, Sampler):
        net = self.net_.eval()
        x = torch.from_numpy(ids)[None].expand(samples, -1)  # (K, P)
        h = None
        if x.shape[1] > 1:
            _, h = net(x[:, :-1])  # (L, K, H): the prompt read in one pass
        sampler = Sampler(net, rows=samples, **rule)
        if h is not None:
            sampler.state = h
        decoders = [self.vocab_.decoder() for _ in range(samples)]
        pending = [""] * samples  # text held back while it could begin a stop string
        live = [True] * samples
        hold = max((len(s) for s in stops), default=1) - 1
        tokens = x[:, -1].numpy().copy()  # (K,)
        done = 0
        while done < length and any(live):
            steps = min(CHUNK, length - done)
            out = sampler.run(tokens, steps, rng.random((steps, samples)))  # (steps, K)
            tokens = out[-1].copy()
            done += steps
            final = done >= length
            pieces = []
            for k in range(samples):
                if not live[k]:
                    pieces.append("")
                    continue
                text = pending[k] + decoders[k].decode(out[:, k]) + (decoders[k].flush() if final else "")
                cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    live[k], text, pending[k] = False, text[:cut], ""
                elif hold and not final:
                    text, pending[k] = text[: len(text) - hold], text[len(text) - hold :]
                pieces.append(text)
            if samples == 1:
                if pieces[0]:
                    yield pieces[0]
            elif any(pieces):
                yield pieces

    def sample(self, prompt="", length: int = 200, **options) -> list[str]:
        """``generate`` collected: one string per sample."""
        samples = options.get("samples", 1)
        parts = [[] for _ in range(samples)]
        for piece in self.generate(prompt, length, **options):
            for k, p in enumerate([piece] if samples == 1 else piece):
                parts[k].append(p)
        return ["".join(p) for p in parts]

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path/model.safetensors`` and ``path/lm.json`` (configuration, vocabulary) in
        one step; ``path``'s other entries stay."""
        self._check_fitted()
        meta = {
            "format": FORMAT,
            "grukit": grukit.__version__,
            "lm": dict(self.config.__dict__),
            "train": self.train_config.to_dict(),
            "vocab": self.vocab_.to_dict(),
        }
        model_folder.write(path, self.net_, "lm.json", meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GRULanguageModel:
        """A fitted model from a folder written by :meth:`save` (no pickle anywhere)."""
        from grukit.data.text import Vocabulary

        with model_folder.reading(path, "lm.json", FORMAT, "language model") as (meta, weights):
            self = cls(train=meta["train"], **meta["lm"])
            self.vocab_ = Vocabulary.from_dict(meta["vocab"])
            self.net_ = model_folder.build(path, lambda: LMNet(self.config, self.vocab_.size))
            self.net_.eval()
        return self
