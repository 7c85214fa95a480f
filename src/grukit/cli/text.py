"""``grukit text``: train a character- or byte-level GRU language model on your text, score it,
sample from it, or run the character-level Penn Treebank demo.

  grukit text train    --data FILE.txt [--valid FILE.txt | --valid-fraction F] [--level char|byte]
                       [--max-time SECONDS] [model and training options] --out DIR
  grukit text train    --dataset char-ptb [--max-time SECONDS] ... --out DIR
  grukit text eval     --model DIR --data FILE.txt [--json FILE]
  grukit text generate --model DIR [--prompt TEXT | --prompt-file FILE] [--length N]
                       [--temperature T] [--top-k K] [--top-p P] [--seed S] [--samples K]
  grukit text demo     [--out DIR]
  grukit text export   --model DIR --out FILE.onnx [--opset N] [--force]

`train` trains with truncated back-propagation through time over contiguous streams, stops early
on the validation text's bits per character, and writes the model, metrics.json (train, valid and
test bpc beside a unigram and a smoothed n-gram fitted on the same split), samples at a few
temperatures and the learning curves. --max-time ends training cleanly at a checkpoint; --resume
continues an interrupted run (with a larger --max-time, a finished one). Under
`torchrun --nproc_per_node=N -m grukit text train ...` it trains data-parallel (DDP).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from grukit.cli._errors import UserError
from grukit.cli._folders import check_output_file, run_folder
from grukit.cli._runs import Formatter, add_train_args, load_model, log_fn, train_config

DATASETS = ("char-ptb",)


def _add_model_args(p, hidden: int = 512) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--level",
        choices=["char", "byte"],
        default="char",
        help="tokens: the text's characters, or its UTF-8 bytes (any file, nothing unknown)",
    )
    g.add_argument(
        "--unknown",
        default=None,
        metavar="CHAR",
        help="char level: the character that stands for characters unseen in training "
        "(default: an unseen character is an error)",
    )
    g.add_argument("--hidden-size", type=int, default=hidden, help="GRU hidden size")
    g.add_argument("--num-layers", type=int, default=1, help="GRU layers")
    g.add_argument("--embedding-size", type=int, default=0, help="embedding size (0: the hidden size)")
    g.add_argument("--reset-after", action="store_true", help="PyTorch's formulation instead of the spec's")
    g.add_argument("--layer-norm", action="store_true", help="layer-normalised GRU")
    g.add_argument("--zoneout", type=float, default=0.0, help="zoneout probability")
    g.add_argument("--recurrent-dropout", type=float, default=0.0, help="variational dropout on h")
    g.add_argument("--weight-dropout", type=float, default=0.0, help="DropConnect on weight_hh")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout between GRU layers")
    g.add_argument("--embed-dropout", type=float, default=0.0, help="dropout on the embeddings")
    g.add_argument("--output-dropout", type=float, default=0.0, help="dropout on the last layer's output")
    g.add_argument("--no-tie", action="store_true", help="do not share the embedding and output matrices")
    g.add_argument("--bptt", type=int, default=128, help="steps per truncated back-propagation window")


def _add_train(p, **defaults) -> None:
    add_train_args(  # the shared options' help says what a batch and an epoch are here
        p,
        epochs=defaults.pop("epochs", 100),
        helps={
            "batch_size": "streams per batch (per process)",
            "steps_per_epoch": "windows per epoch (0: one pass or about a million tokens, whichever is smaller)",
            "lr": "Adam learning rate (its peak under --schedule budget)",
        },
    )
    g = p.add_argument_group("budget")
    g.add_argument(
        "--max-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall-clock budget for training, resumes included; ends at a checkpoint",
    )
    g.add_argument(
        "--schedule",
        choices=("plateau", "budget"),
        default="plateau",
        help="learning rate: plateau halves it when the validation bpc stalls for two epochs; "
        "budget falls linearly from --lr to 0 over --max-time (needs it; best for short runs)",
    )
    g.add_argument("--prompt", default="", help="prompt of the samples written after training")
    p.set_defaults(batch_size=64, lr=2e-3, clip=0.25, patience=6, **defaults)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "text",
        help="text generation: a character/byte GRU language model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND", required=True)

    t = tsub.add_parser(
        "train",
        help="train on a text file, evaluate against baselines, save the model",
        description="Train a GRU language model on FILE.txt (or a packaged dataset).",
        formatter_class=Formatter,
    )
    g = t.add_argument_group("data")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE.txt", help="the training text")
    src.add_argument(
        "--dataset",
        choices=DATASETS,
        help="a packaged corpus with its official split (char-ptb: the TCN paper's "
        "character-level Penn Treebank, from the `treebank` package or $GRUKIT_PTB)",
    )
    val = g.add_mutually_exclusive_group()
    val.add_argument("--valid", metavar="FILE.txt", help="validation text (early stopping)")
    val.add_argument(
        "--valid-fraction",
        type=float,
        default=0.05,
        help="without --valid: this share of the end of --data (before the test share)",
    )
    tst = g.add_mutually_exclusive_group()
    tst.add_argument("--test", metavar="FILE.txt", help="test text (scored once, at the end)")
    tst.add_argument(
        "--test-fraction",
        type=float,
        default=0.05,
        help="without --test: this share of the end of --data (0: no test text)",
    )
    _add_model_args(t)
    _add_train(t)
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model, metrics and samples")
    t.set_defaults(func=run_train)

    e = tsub.add_parser(
        "eval",
        help="bits per character of a text under a trained model",
        description="Read FILE.txt in one pass (the state carried) and print its "
        "bits per character and per byte.",
        formatter_class=Formatter,
    )
    e.add_argument("--model", required=True, metavar="DIR", help="a folder written by `text train`")
    e.add_argument("--data", required=True, metavar="FILE.txt")
    e.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    e.add_argument("--force", action="store_true", help="replace --json if it exists")
    e.set_defaults(func=run_eval)

    gen = tsub.add_parser(
        "generate",
        help="sample text from a trained model, streamed as it comes",
        description="Read the prompt in one pass, then sample one token at a time.",
        formatter_class=Formatter,
    )
    gen.add_argument("--model", required=True, metavar="DIR", help="a folder written by `text train`")
    pr = gen.add_mutually_exclusive_group()
    pr.add_argument("--prompt", default="", help="text to continue")
    pr.add_argument("--prompt-file", default=None, metavar="FILE", help="read the prompt from a file")
    gen.add_argument("--length", type=int, default=500, help="tokens to sample")
    gen.add_argument("--temperature", type=float, default=0.8, help="0: always the most likely token")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the K most likely (0: all)")
    gen.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus: the smallest set holding this probability"
    )
    gen.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
    gen.add_argument("--samples", type=int, default=1, help="independent samples, drawn together")
    gen.add_argument("--stop", default=None, help="end a sample where this string appears")
    gen.set_defaults(func=run_generate)

    x = tsub.add_parser(
        "export",
        help="write a trained model as one ONNX graph (+ its vocabulary)",
        description="Write the model as ONNX (tokens, state -> logits, state_out; any "
        "batch and length), checked in ONNX Runtime against the model before it "
        "replaces FILE.onnx; the vocabulary goes beside it as FILE.vocab.json.",
        formatter_class=Formatter,
    )
    x.add_argument("--model", required=True, metavar="DIR", help="a folder written by `text train`")
    x.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    x.add_argument(
        "--opset",
        type=int,
        default=None,
        metavar="N",
        help="ONNX opset, 17 or newer (none: torch.onnx.export's default)",
    )
    x.add_argument("--force", action="store_true", help="replace FILE.onnx and its .vocab.json if they exist")
    x.set_defaults(func=run_export)

    d = tsub.add_parser(
        "demo",
        help="character-level Penn Treebank in a few minutes",
        description="Train a small GRU on character-level Penn Treebank within a time "
        "budget and compare its test bpc with a unigram, a smoothed n-gram and the "
        "published results.",
        formatter_class=Formatter,
    )
    d.add_argument("--out", default="demo-report/text", metavar="DIR", help="output folder")
    _add_model_args(d, hidden=DEMO_HIDDEN)
    _add_train(d, epochs=100, max_time=DEMO_SECONDS)
    # run.py's DEMO_BPTT, DEMO_LR, DEMO_SCHEDULE
    d.set_defaults(func=run_demo, prompt="the ", bptt=64, lr=1e-2, schedule="budget")


DEMO_HIDDEN = 256  # apps.text.run's DEMO_HIDDEN and DEMO_SECONDS (not imported: cheap --help)
DEMO_SECONDS = 150.0


# -- helpers ---------------------------------------------------------------------------------


def _lm(args):
    from grukit.apps.text.estimator import GRULanguageModel

    if args.schedule == "budget" and args.max_time is None:
        raise UserError("--schedule budget decays the learning rate over --max-time: give --max-time")
    tc = dataclasses.replace(train_config(args), schedule=args.schedule, max_time=args.max_time)
    return GRULanguageModel(
        train=tc,
        level=args.level,
        unknown=args.unknown,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        embedding_size=args.embedding_size,
        reset_after=args.reset_after,
        layer_norm=args.layer_norm,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        weight_dropout=args.weight_dropout,
        dropout=args.dropout,
        embed_dropout=args.embed_dropout,
        output_dropout=args.output_dropout,
        tie_weights=not args.no_tie,
        bptt=args.bptt,
    )


def _read(path: str, level: str):
    from grukit.data.text import read_text

    return read_text(path, level=level)


def _fraction(name: str, v: float) -> float:
    if not 0 <= v < 1:
        raise UserError(f"{name} must be in [0, 1), got {v}")
    return v


def _splits(args) -> dict:
    """train / valid / test texts from the options (the fractions cut the end of --data)."""
    if args.dataset == "char-ptb":
        from grukit.data.text import char_ptb

        if args.level != "char":
            raise UserError("--dataset char-ptb is a character-level benchmark: drop --level byte")
        return char_ptb()
    text = _read(args.data, args.level)
    splits = {}
    for name, fraction_name in (("test", "test_fraction"), ("valid", "valid_fraction")):
        given = getattr(args, name)
        if given:
            splits[name] = _read(given, args.level)
            continue
        share = _fraction("--" + fraction_name.replace("_", "-"), getattr(args, fraction_name))
        cut = len(text) - int(round(len(text) * share))
        if share and cut < len(text):
            text, splits[name] = text[:cut], text[cut:]
    splits["train"] = text
    return splits


def _run(args, title: str, published=None, gate_text=None) -> int:
    from grukit.apps.text.run import text_run
    from grukit.train.distributed import context

    out = Path(args.out)
    ctx = context()
    lm = _lm(args)
    train = lm.train_config.to_dict()
    max_time = train.pop("max_time")
    config = {
        "command": f"text {args.text_command}",
        "data": str(Path(args.data).resolve()) if getattr(args, "data", None) else None,
        "dataset": getattr(args, "dataset", "char-ptb"),
        "valid": getattr(args, "valid", None),
        "test": getattr(args, "test", None),
        "lm": dict(lm.config.__dict__),
        "train": train,
        "max_time": max_time,
        "world_size": ctx.world_size,
    }
    splits = _splits(args)  # read before --out is made: a bad file leaves nothing behind
    log = log_fn(args)
    log(
        "data: "
        + ", ".join(
            f"{k} {len(v):,} {'characters' if isinstance(v, str) else 'bytes'}" for k, v in splits.items()
        )
    )
    with run_folder(out, args.resume, config, ctx):
        text_run(
            splits,
            lm,
            out,
            resume=args.resume,
            run_config=config,
            published=published,
            title=title,
            prompt=args.prompt,
            gate_text=gate_text,
            log=log,
            is_main=ctx.is_main,
        )
    return 0


# -- subcommands -----------------------------------------------------------------------------


def run_train(args) -> int:
    from grukit.apps.text.run import PUBLISHED_CHAR_PTB

    if args.dataset == "char-ptb":
        from grukit.apps.text.run import SENTENCE

        return _run(args, "character-level Penn Treebank", PUBLISHED_CHAR_PTB, SENTENCE)
    return _run(args, Path(args.data).name)


def run_demo(args) -> int:
    from grukit.apps.text.run import PUBLISHED_CHAR_PTB, SENTENCE

    args.dataset, args.data = "char-ptb", None
    return _run(args, "character-level Penn Treebank (demo)", PUBLISHED_CHAR_PTB, SENTENCE)


def run_eval(args) -> int:
    from grukit._io import atomic_write_text
    from grukit.apps.text.estimator import GRULanguageModel

    if args.json:
        check_output_file(Path(args.json), args.force)
    lm, _ = load_model(GRULanguageModel, args.model)
    result = lm.evaluate(_read(args.data, lm.vocab_.level))
    print(
        f"{args.data}: {result['bpc']:.4f} bits per character, {result['bits_per_byte']:.4f} bits per "
        f"byte ({result['characters']:,} characters scored)"
    )
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"data": args.data, **result}, indent=1))
    return 0


def run_generate(args) -> int:
    from grukit.apps.text.estimator import GRULanguageModel

    lm, _ = load_model(GRULanguageModel, args.model)
    prompt = args.prompt
    if args.prompt_file:
        prompt = _read(args.prompt_file, lm.vocab_.level)
    pieces = lm.generate(
        prompt,
        args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop,
        samples=args.samples,
    )
    out = sys.stdout
    if args.samples == 1:
        out.write(prompt if isinstance(prompt, str) else prompt.decode("utf-8", "replace"))
        for piece in pieces:
            out.write(piece)
            out.flush()
        out.write("\n")
    else:
        texts = [[] for _ in range(args.samples)]
        for part in pieces:
            for k, p in enumerate(part):
                texts[k].append(p)
        for k, t in enumerate(texts):
            out.write(f"--- sample {k + 1} ---\n{prompt}{''.join(t)}\n")
    out.flush()
    return 0


def run_export(args) -> int:
    from grukit.apps.text.estimator import GRULanguageModel
    from grukit.apps.text.export import TOLERANCE, export_onnx, vocab_path

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out must name a .onnx file, got {out}")
    for path in (out, vocab_path(out)):
        check_output_file(path, args.force)
    lm, _ = load_model(GRULanguageModel, args.model)
    export_onnx(lm, out, opset=args.opset)
    L, H, V = lm.config.num_layers, lm.config.hidden_size, lm.vocab_.size
    print(
        f"wrote   {out}: tokens (N, T) int64, state ({L}, N, {H}) float32 -> logits (N, T, {V}), "
        f"state_out ({L}, N, {H}); vocabulary in {vocab_path(out)}"
    )
    print(f"verified: ONNX Runtime matches the model on a random batch (tolerance {TOLERANCE:g})")
    return 0
