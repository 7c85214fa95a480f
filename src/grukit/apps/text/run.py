"""One language-model run, as ``grukit text train`` and ``grukit text demo`` do it: train the GRU
on the training text (early stopping on the validation text), score the validation and test
texts in one pass each, fit the baselines on the same split (the unigram distribution and a
smoothed character n-gram whose order is chosen on the validation text), sample at a few
temperatures, and write the model, ``metrics.json``, ``samples.txt`` and the learning curves
(in bits per token) into one folder (rank 0 only under ``torchrun``)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

import grukit
from grukit._io import atomic_write_text
from grukit.apps.text.estimator import GRULanguageModel

__all__ = [
    "text_run",
    "ptb_demo",
    "PUBLISHED_CHAR_PTB",
    "SAMPLE_TEMPERATURES",
    "format_table",
    "DEMO_HIDDEN",
    "DEMO_SECONDS",
    "SENTENCE",
]

# Test bits per character on character-level Penn Treebank (the TCN paper's preparation):
# Bai, Kolter & Koltun (2018), "An Empirical Evaluation of Generic Convolutional and Recurrent
# Networks for Sequence Modeling", Table 1 (about 3M parameters each); Merity, Keskar & Socher
# (2018), "An Analysis of Neural Language Modeling at Multiple Scales", Table 4.
PUBLISHED_CHAR_PTB = [
    {"model": "GRU (Bai et al. 2018)", "bpc": 1.37, "parameters": "3.0M"},
    {"model": "LSTM (Bai et al. 2018)", "bpc": 1.36, "parameters": "3.0M"},
    {"model": "TCN (Bai et al. 2018)", "bpc": 1.31, "parameters": "3.0M"},
    {"model": "3-layer AWD-LSTM (Merity et al. 2018)", "bpc": 1.175, "parameters": "13.8M"},
]
SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)
# the demo: a one-layer GRU of 256 units trained for two and a half minutes, with the recipe that
# measured best in that budget (docs/text.md: windows of 64 steps, Adam at 1e-2 falling linearly
# to 0 over the budget)
DEMO_HIDDEN = 256
DEMO_SECONDS = 150.0
DEMO_BPTT = 64
DEMO_LR = 1e-2  # peak of the "budget" schedule (linear decay to 0 over the seconds given)
DEMO_SCHEDULE = "budget"
SENTENCE = "the company said it expects to report a loss for the third quarter"  # char-PTB style
TRAIN_SCORED = 200_000  # the training text's bpc is measured on its last this many tokens
NGRAM_ORDERS = range(1, 13)  # on char-PTB valid bits still fall slowly up to 14 (1.44 at 10)


def _tail(text, n: int):
    return text[-n:] if len(text) > n else text


def text_run(
    splits: dict,
    lm: GRULanguageModel,
    out: Path,
    *,
    resume: bool = False,
    run_config: dict | None = None,
    published: list | None = None,
    title: str = "text",
    prompt: str = "",
    sample_length: int = 400,
    gate_text: str | None = None,
    log=print,
    is_main: bool = True,
    shown_as: Path | None = None,
) -> dict:
    """Train ``lm`` on ``splits["train"]`` (validated on ``splits["valid"]``), evaluate, run the
    baselines, write everything; returns the metrics. ``splits["test"]`` may be absent. With
    ``gate_text``, ``gates.png`` shows the first layer's gates while the model reads it."""
    from grukit.apps.text.ngram import select_model, unigram_bits

    t0 = time.perf_counter()
    lm.fit(
        splits["train"],
        valid=splits.get("valid"),
        valid_fraction=0.0,
        also=[splits["test"]] if splits.get("test") else [],
        out_dir=out,
        resume=resume,
        log=log,
    )
    fit_seconds = time.perf_counter() - t0
    if not is_main:
        return {}
    scored = {"train": _tail(splits["train"], TRAIN_SCORED)}
    scored.update({k: splits[k] for k in ("valid", "test") if splits.get(k)})
    ours = {k: lm.evaluate(v) for k, v in scored.items()}
    log("baselines: unigram and smoothed n-gram (order chosen on the validation text)")
    ids = {k: lm._tokens(splits[k], f"the {k} text") for k in ("train", "valid", "test") if splits.get(k)}
    V = lm.vocab_.size
    # bits per token -> bits per character of the same text (1 in char mode)
    per_char = {k: ours[k]["tokens"] / ours[k]["characters"] for k in ours}
    baselines = {"unigram": {}, "ngram": {}}
    held = [k for k in ("valid", "test") if k in ids]
    for k in held:
        baselines["unigram"][k] = unigram_bits(ids["train"], ids[k], V) * per_char[k]
    if "valid" in ids:
        model, by_order = select_model(ids["train"], ids["valid"], V, orders=NGRAM_ORDERS)
        order = model.order
        baselines["ngram"] = {
            "order": order,
            "valid_by_order": {str(o): b * per_char["valid"] for o, b in by_order.items()},
        }
        baselines["ngram"]["valid"] = by_order[order] * per_char["valid"]
        if "test" in ids:
            baselines["ngram"]["test"] = model.bits(ids["test"]) * per_char["test"]
    samples = []
    for temp in SAMPLE_TEMPERATURES:
        text = lm.sample(prompt, sample_length, temperature=temp, seed=0)[0]
        samples.append({"temperature": temp, "prompt": prompt, "text": text})
    gates = None
    if gate_text is not None:
        from grukit.apps.text.figures import gate_figure

        try:
            gates = {"text": gate_text, **gate_figure(lm, gate_text, out / "gates.png")}
        except ValueError as exc:  # a character the model never saw: no figure, say why
            log(f"no gate figure: {exc}")
    r = lm.result_
    metrics = {
        "title": title,
        "level": lm.config.level,
        "bpc": {k: v["bpc"] for k, v in ours.items()},
        "bits_per_byte": {k: v["bits_per_byte"] for k, v in ours.items()},
        "scored": {
            k: {"tokens": v["tokens"], "characters": v["characters"], "bytes": v["bytes"]}
            for k, v in ours.items()
        },
        "baselines": baselines,
        "published": published or [],
        "model": {"parameters": lm.num_parameters, "vocabulary": V, "config": dict(lm.config.__dict__)},
        "split": {k: len(v) for k, v in ids.items()},
        "training": {
            "epochs_run": r.epochs_run,
            "best_epoch": r.best_epoch,
            "stopped": r.stopped,
            "best_valid_bits_per_token": r.best_val_loss,
            "seconds": round(fit_seconds, 1),
            "tokens_per_s": _rate(r.history),
        },
        "samples": samples,
        "gates": gates,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "grukit": grukit.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "cpu": _cpu(),
        },
        "config": run_config or {},
    }
    lm.save(out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False, default=float))
    atomic_write_text(
        out / "samples.txt",
        "".join(f"--- temperature {s['temperature']} ---\n{s['prompt']}{s['text']}\n\n" for s in samples),
    )
    log("")
    log(format_table(metrics))
    log(f"wrote {shown_as or out}/: model, metrics.json, samples.txt, learning_curves.png")
    return metrics


def ptb_demo(
    out: Path,
    *,
    seconds: float = DEMO_SECONDS,
    hidden_size: int = DEMO_HIDDEN,
    seed: int = 0,
    progress: str = "auto",
    run_config: dict | None = None,
    log=print,
    shown_as: Path | None = None,
) -> dict:
    """Character-level Penn Treebank in a few minutes: a small GRU trained for ``seconds`` on
    the official split, beside the baselines and the published results."""
    from grukit.data.text import char_ptb

    splits = char_ptb()
    lm = GRULanguageModel(
        hidden_size=hidden_size,
        bptt=DEMO_BPTT,
        train={
            "max_time": seconds,
            "seed": seed,
            "lr": DEMO_LR,
            "schedule": DEMO_SCHEDULE,
            "progress": progress,
        },
    )
    log(
        f"character-level Penn Treebank: {', '.join(f'{k} {len(v):,}' for k, v in splits.items())} "
        f"characters; a GRU of {hidden_size} units trained for {seconds:g} s"
    )
    return text_run(
        splits,
        lm,
        out,
        run_config=run_config,
        published=PUBLISHED_CHAR_PTB,
        title="character-level Penn Treebank",
        prompt="the ",
        gate_text=SENTENCE,
        log=log,
        shown_as=shown_as,
    )


def _rate(history: list[dict]) -> float | None:
    seconds = sum(h["seconds"] for h in history)
    return round(sum(h["samples"] for h in history) / seconds, 1) if seconds else None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(metrics: dict) -> str:
    """The bpc table: the GRU, the baselines on the same split, the published numbers."""
    cols = [k for k in ("valid", "test") if k in metrics["bpc"]]
    rows = [
        (f"GRU ({metrics['model']['parameters'] / 1e6:.2f}M parameters)", [metrics["bpc"][k] for k in cols])
    ]
    b = metrics["baselines"]
    if b.get("ngram"):
        rows.append((f"{b['ngram']['order']}-gram (modified Kneser-Ney)", [b["ngram"].get(k) for k in cols]))
    rows.append(("unigram", [b["unigram"].get(k) for k in cols]))
    for p in metrics.get("published", []):
        rows.append((f"{p['model']}, {p['parameters']} (published)", [None] * (len(cols) - 1) + [p["bpc"]]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'bits per character':<{width}}  " + "  ".join(f"{c:>7}" for c in cols)]
    for name, vals in rows:
        lines.append(
            f"{name:<{width}}  " + "  ".join(f"{v:7.3f}" if v is not None else f"{'':>7}" for v in vals)
        )
    return "\n".join(lines)
