"""``grukit speech``: train a GRU speech recognizer on a folder of recordings, recognise files or
live audio with it, score it, or run the spoken-digit demo.

  grukit speech train     --data DIR|MANIFEST.csv [--task classify|transcribe]
                          [--holdout-speaker NAME | --loso] [model and training options] --out DIR
  grukit speech train     --dataset fsdd [--data DIR] ...        # the Free Spoken Digit Dataset
  grukit speech recognize --model DIR FILE.wav [FILE.wav ...] [--out FILE.csv] [--stream]
  grukit speech evaluate  --model DIR --data DIR|MANIFEST.csv [--json FILE]
  grukit speech demo      [--out DIR]

Data: a folder with one subfolder of recordings per word (DIR/yes/*.wav), a folder of FSDD-style
files ({word}_{speaker}_{index}.wav), or a CSV manifest with the columns path and label (words)
or path and transcript (strings of words), optionally speaker. WAV, FLAC and OGG; a file that
cannot be read is reported and skipped.

Splits: --holdout-speaker tests on one speaker's recordings (never heard in training); --loso
does that for every speaker in turn; FSDD-style data otherwise uses FSDD's official split
(recordings 0-4 test); anything else a random --test-fraction. With --task transcribe on words
(not transcripts), the recordings are joined into strings of 3-7 words with random pauses:
training strings from training recordings only, test strings from held-out ones.

Under `torchrun --nproc_per_node=N -m grukit speech train ...` it trains data-parallel (DDP).
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

DATASETS = ("fsdd",)
TASKS = ("classify", "transcribe")


def _add_model_args(p, hidden: int = 128) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--features", choices=["logmel", "mfcc"], default=None, help="acoustic features (default: mfcc)"
    )
    g.add_argument("--sample-rate", type=int, default=8000, help="audio is resampled to this rate (Hz)")
    g.add_argument("--n-mels", type=int, default=40, help="mel bands")
    g.add_argument("--n-mfcc", type=int, default=13, help="cepstral coefficients kept (--features mfcc)")
    g.add_argument("--stack", type=int, default=2, help="10 ms frames per GRU step")
    g.add_argument(
        "--norm",
        choices=["utterance", "global"],
        default=None,
        help="feature normalisation (default: utterance if bidirectional, else global)",
    )
    g.add_argument("--hidden-size", type=int, default=hidden, help="GRU hidden size")
    g.add_argument("--num-layers", type=int, default=2, help="GRU layers")
    d = g.add_mutually_exclusive_group()
    d.add_argument(
        "--bidirectional",
        dest="bidirectional",
        action="store_true",
        default=None,
        help="read each recording both ways (default for classify)",
    )
    d.add_argument(
        "--unidirectional",
        dest="bidirectional",
        action="store_false",
        help="one direction: the model can stream (default for transcribe)",
    )
    g.add_argument(
        "--pooling",
        choices=["attention", "mean", "max", "last"],
        default="attention",
        help="classify: how the steps become one vector",
    )
    g.add_argument("--reset-after", action="store_true", help="PyTorch's formulation instead of the spec's")
    g.add_argument("--layer-norm", action="store_true", help="layer-normalised GRU")
    g.add_argument("--zoneout", type=float, default=0.0, help="zoneout probability")
    g.add_argument("--recurrent-dropout", type=float, default=0.0, help="variational dropout on h")
    g.add_argument("--weight-dropout", type=float, default=0.0, help="DropConnect on weight_hh")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout between GRU layers")
    g.add_argument("--output-dropout", type=float, default=0.1, help="dropout before the output layer")
    a = p.add_argument_group("augmentation (training only)")
    a.add_argument("--no-spec-augment", action="store_true", help="no time and frequency masking")
    a.add_argument(
        "--freq-mask",
        type=int,
        default=None,
        metavar="F",
        help="widest SpecAugment frequency mask, in features (default: 8 to classify, a "
        "fifth of the features to transcribe)",
    )
    a.add_argument("--speed-perturb", type=float, default=0.1, help="play at 1-p, 1 or 1+p speed (0: off)")
    a.add_argument(
        "--noise-snr",
        type=float,
        default=10.0,
        metavar="DB",
        help="add white noise to half the recordings, SNR between DB and 40 dB",
    )
    a.add_argument("--no-noise", action="store_true", help="no added noise")
    a.add_argument(
        "--volume-perturb",
        type=float,
        default=None,
        metavar="DB",
        help="change each recording's level by a gain in [-DB, +DB] (0: off; default: 20 "
        "on global statistics, 0 on per-utterance ones)",
    )


def _add_train(p, **defaults) -> None:
    add_train_args(
        p,
        epochs=defaults.pop("epochs", 40),
        helps={
            "batch_size": "recordings per batch (per process; default 64, or 16 for transcribe)",
            "steps_per_epoch": "cap on batches per epoch (0: every recording)",
        },
    )
    p.set_defaults(batch_size=None, lr=3e-3, patience=12, **defaults)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "speech",
        help="speech recognition: spoken words and strings of words",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="speech_command", metavar="SUBCOMMAND", required=True)

    t = ssub.add_parser(
        "train",
        help="train on recordings, measure on held-out ones, save the model",
        description="Train a GRU speech recognizer and measure it against pooled-MFCC "
        "baselines on held-out recordings.",
        formatter_class=Formatter,
    )
    g = t.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="DIR|MANIFEST.csv",
        help="recordings: a folder or a CSV manifest (with --dataset fsdd: where FSDD is)",
    )
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="fsdd: the Free Spoken Digit Dataset from --data, $GRUKIT_FSDD or the cache "
        "(downloaded there when online)",
    )
    g.add_argument(
        "--task",
        choices=TASKS,
        default=None,
        help="classify: one word per recording; transcribe: strings of words (CTC) (default: from the data)",
    )
    s = g.add_mutually_exclusive_group()
    s.add_argument("--holdout-speaker", metavar="NAME", help="test on this speaker, train on the others")
    s.add_argument(
        "--loso", action="store_true", help="classify: leave each speaker out in turn (one model per speaker)"
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="without speakers or FSDD names: this random share of the recordings is the test set",
    )
    g.add_argument(
        "--strings",
        type=int,
        default=3000,
        help="transcribe on words: training strings of 3-7 words to make (test: a sixth as many)",
    )
    _add_model_args(t)
    _add_train(t)
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model, metrics and figures")
    t.set_defaults(func=run_train)

    r = ssub.add_parser(
        "recognize",
        help="the word or transcript of each file (or live, with --stream)",
        description="Print one line per file: path, recognised text, probability.",
        formatter_class=Formatter,
    )
    r.add_argument("--model", required=True, metavar="DIR", help="a folder written by `speech train`")
    r.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG)")
    r.add_argument("--out", default=None, metavar="FILE.csv", help="write path,text,confidence as CSV")
    r.add_argument("--force", action="store_true", help="replace --out if it exists")
    r.add_argument("--decode", choices=["beam", "greedy"], default="beam", help="transcribe: CTC decoder")
    r.add_argument("--beam-width", type=int, default=16, help="prefix beam search width")
    r.add_argument(
        "--stream",
        action="store_true",
        help="read each file in chunks as if live and print words as they are recognised",
    )
    r.add_argument("--chunk-ms", type=float, default=100.0, help="--stream: milliseconds of audio per chunk")
    r.set_defaults(func=run_recognize)

    e = ssub.add_parser(
        "evaluate",
        help="accuracy and confusion matrix, or word error rate",
        description="Score a trained model on labelled recordings.",
        formatter_class=Formatter,
    )
    e.add_argument("--model", required=True, metavar="DIR", help="a folder written by `speech train`")
    e.add_argument("--data", required=True, metavar="DIR|MANIFEST.csv", help="labelled recordings")
    e.add_argument("--decode", choices=["beam", "greedy"], default="beam", help="transcribe: CTC decoder")
    e.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON")
    e.add_argument("--force", action="store_true", help="replace --json if it exists")
    e.set_defaults(func=run_evaluate)

    d = ssub.add_parser(
        "demo",
        help="spoken digits (FSDD): words, unseen speakers, digit strings",
        description="Train on the Free Spoken Digit Dataset: isolated digits on the "
        "official split, one speaker held out, and connected digit strings; each "
        "beside its baseline.",
        formatter_class=Formatter,
    )
    d.add_argument("--out", default="demo-report/speech", metavar="DIR", help="output folder")
    d.add_argument("--data", default=None, metavar="DIR", help="where FSDD is (else $GRUKIT_FSDD, the cache)")
    d.add_argument("--epochs", type=int, default=None, help="epochs of each model (default: the demo's)")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--resume", action="store_true", help="continue the interrupted demo in --out")
    d.set_defaults(func=run_demo)


# -- helpers ---------------------------------------------------------------------------------


def recognizer(args, task: str):
    from grukit.apps.speech.estimator import TRANSCRIBE_BATCH, GRUSpeechRecognizer

    if args.batch_size is None:
        args.batch_size = TRANSCRIBE_BATCH if task == "transcribe" else 64
    tc = dataclasses.replace(train_config(args), schedule="cosine")
    return GRUSpeechRecognizer(
        train=tc,
        task=task,
        features=args.features,
        sample_rate=args.sample_rate,
        n_mels=args.n_mels,
        n_mfcc=args.n_mfcc,
        stack=args.stack,
        norm=args.norm,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        bidirectional=args.bidirectional,
        pooling=args.pooling,
        reset_after=args.reset_after,
        layer_norm=args.layer_norm,
        zoneout=args.zoneout,
        recurrent_dropout=args.recurrent_dropout,
        weight_dropout=args.weight_dropout,
        dropout=args.dropout,
        output_dropout=args.output_dropout,
        spec_augment=not args.no_spec_augment,
        freq_mask=args.freq_mask,
        speed_perturb=args.speed_perturb,
        noise_snr=None if args.no_noise else args.noise_snr,
        volume_perturb=args.volume_perturb,
    )


def _utterances(args):
    """(utterances, the task their labels suit) from --dataset / --data."""
    if args.dataset == "fsdd":
        from grukit.data.speech import fsdd

        return fsdd(args.data), "classify"
    if not args.data:
        raise UserError("give the recordings: --data DIR|MANIFEST.csv, or --dataset fsdd")
    from grukit.data.speech import load_utterances

    utts, task = load_utterances(args.data)
    return utts, task or "classify"


def _split(utts, args, log):
    """(train, test, how) by the rules of the module docstring."""
    import numpy as np

    from grukit.data.speech import official_split, speaker_split

    if args.holdout_speaker:
        train, test = speaker_split(utts, args.holdout_speaker)
        return train, test, f"speaker {args.holdout_speaker} held out"
    if all(u.index is not None and u.speaker is not None for u in utts):
        train, test = official_split(utts)
        return train, test, "FSDD's official split (recordings 0-4 test)"
    if not 0 < args.test_fraction < 1:
        raise UserError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    order = np.random.default_rng(args.seed).permutation(len(utts))
    n = max(1, int(round(len(utts) * args.test_fraction)))
    test = [utts[i] for i in sorted(order[:n])]
    train = [utts[i] for i in sorted(order[n:])]
    return train, test, f"a random {args.test_fraction:g} of the recordings"


# -- subcommands -----------------------------------------------------------------------------


def run_train(args) -> int:
    from grukit.train.distributed import context

    if args.dataset and args.data and Path(args.data).suffix.lower() == ".csv":
        raise UserError("--dataset fsdd takes --data as the folder FSDD is in, not a manifest")
    out = Path(args.out)
    ctx = context()
    log = log_fn(args)
    utts, source_task = _utterances(args)  # read before --out is made: bad data leaves nothing behind
    task = args.task or source_task
    if source_task == "transcribe" and task == "classify":
        raise UserError(f"{args.data} has transcripts (strings of words): use --task transcribe")
    if args.loso and task != "classify":
        raise UserError("--loso is for --task classify")
    if args.strings < 6:
        raise UserError(f"--strings must be at least 6, got {args.strings}")
    rec = recognizer(args, task)
    title = "FSDD" if args.dataset == "fsdd" else Path(args.data).name
    train_dict = rec.train_config.to_dict()
    config = {
        "command": "speech train",
        "data": str(Path(args.data).resolve()) if args.data else None,
        "dataset": args.dataset,
        "task": task,
        "holdout_speaker": args.holdout_speaker,
        "loso": args.loso,
        "test_fraction": args.test_fraction,
        "strings": args.strings,
        "speech": rec.config.resolved(),
        "train": train_dict,
        "world_size": ctx.world_size,
    }
    log(
        f"data: {len(utts):,} recordings"
        + (
            f" from {len({u.speaker for u in utts} - {None})} speakers"
            if any(u.speaker for u in utts)
            else ""
        )
    )
    if args.loso:
        from grukit.apps.speech.run import speakers_run

        with run_folder(out, args.resume, config, ctx):
            m = speakers_run(
                utts,
                lambda: recognizer(args, task),
                out,
                resume=args.resume,
                title=title,
                log=log,
                is_main=ctx.is_main,
            )
        if ctx.is_main:
            g = m["summary"]["GRU"]
            log(
                f"leave one speaker out: mean accuracy {g['mean']:.4f}, worst {g['worst_speaker']} "
                f"{g['worst']:.4f}"
            )
        return 0
    train, test, how = _split(utts, args, log)
    log(f"split: {how}: {len(train):,} training and {len(test):,} test recordings")
    if task == "classify":
        from grukit.apps.speech.run import classify_run

        with run_folder(out, args.resume, config, ctx):
            m = classify_run(
                train, test, rec, out, resume=args.resume, title=title, log=log, is_main=ctx.is_main
            )
        if ctx.is_main:
            base = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in m["baselines"].items())
            log(f"test accuracy {m['accuracy']:.4f} ({m['errors']} errors in {m['test_recordings']}); {base}")
        return 0
    from grukit.apps.speech.run import string_set, transcribe_run, transcript_set

    rate = rec.config.sample_rate
    if source_task == "transcribe":
        train_data = transcript_set(train, rate, log)
        tests = {"held-out recordings": transcript_set(test, rate, log)}
    else:
        n_test = max(1, args.strings // 6)
        tests = {}
        if args.holdout_speaker and all(u.index is not None for u in train):
            # the training speakers' held-out recordings make a second test set
            from grukit.data.speech import official_split

            train, others = official_split(train)
            tests["strings of held-out recordings"] = string_set(others, n_test, rate, args.seed + 2, log)
        name = (
            f"strings of speaker {args.holdout_speaker} (held out)"
            if args.holdout_speaker
            else "strings of held-out recordings"
        )
        tests[name] = string_set(test, n_test, rate, args.seed + 1, log)
        train_data = string_set(train, args.strings, rate, args.seed, log)
    with run_folder(out, args.resume, config, ctx):
        m = transcribe_run(
            train_data, tests, rec, out, resume=args.resume, title=title, log=log, is_main=ctx.is_main
        )
    if ctx.is_main:
        for name, r in m["tests"].items():
            log(
                f"{name}: word error rate {r['beam']['wer']:.4f} (beam), {r['greedy']['wer']:.4f} (greedy); "
                f"sentence accuracy {r['beam']['sentence_accuracy']:.4f}"
            )
    return 0


def run_recognize(args) -> int:
    import csv
    import io

    from grukit.apps.speech.estimator import GRUSpeechRecognizer

    if args.out:
        check_output_file(Path(args.out), args.force)
    if args.chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {args.chunk_ms}")
    rec, _ = load_model(GRUSpeechRecognizer, args.model)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    if args.stream:
        return _stream_files(rec, args, log)
    rows = rec.recognize_files(args.files, decode=args.decode, beam_width=args.beam_width, log=log)
    failed = [(p, why) for p, r, why in rows if r is None]
    if len(failed) == len(rows):
        raise UserError(f"none of the {len(rows)} files could be read: {failed[0][0]}: {failed[0][1]}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "text", "confidence"])
    for p, r, why in rows:
        if r is not None:
            print(f"{p}\t{r.text}\t{r.confidence:.4f}")
            writer.writerow([p, r.text, f"{r.confidence:.6f}"])
        else:
            print(f"{p}: skipped: {why}", file=sys.stderr)
    if args.out:
        from grukit._io import atomic_write_text

        atomic_write_text(Path(args.out), buf.getvalue())
    return 0


def _stream_files(rec, args, log) -> int:
    from grukit.data.audio import read_audio

    try:
        stream = rec.stream()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    step = max(1, int(round(rec.config.sample_rate * args.chunk_ms / 1000)))
    for path in args.files:
        wave, _ = read_audio(path, rec.config.sample_rate)
        print(f"{path}:", end="", flush=True)
        words = []
        for a in range(0, len(wave), step):
            for w in stream.push(wave[a : a + step]):
                print(f" {w.text}", end="", flush=True)
                words.append(w)
        for w in stream.finish():
            print(f" {w.text}", end="", flush=True)
            words.append(w)
        print(f"\t({', '.join(f'{w.text}@{w.time:.2f}s' for w in words) or 'no words'})", flush=True)
    return 0


def run_evaluate(args) -> int:
    from grukit._io import atomic_write_text
    from grukit.apps.speech.estimator import GRUSpeechRecognizer
    from grukit.data.speech import load_utterances

    if args.json:
        check_output_file(Path(args.json), args.force)
    rec, _ = load_model(GRUSpeechRecognizer, args.model)
    utts, task = load_utterances(args.data)
    if (task or "classify") != rec.config.task:
        raise UserError(
            f"{args.data} has {'transcripts' if task == 'transcribe' else 'word labels'} "
            f"but the model is a {rec.config.task} model"
        )
    r = rec.evaluate(utts, decode=args.decode)
    if r["task"] == "classify":
        print(f"{args.data}: accuracy {r['accuracy']:.4f} ({r['recordings']} recordings)")
        classes = r["classes"]
        width = max(5, *(len(c) for c in classes))
        print("confusion (rows: truth, columns: prediction)")
        print(" " * width + " " + " ".join(f"{c:>{width}}" for c in classes))
        for c, row in zip(classes, r["confusion"]):
            print(f"{c:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    else:
        print(
            f"{args.data}: word error rate {r['wer']:.4f} ({r['substitutions']} substitutions, "
            f"{r['deletions']} deletions, {r['insertions']} insertions in {r['words']} words); "
            f"sentence accuracy {r['sentence_accuracy']:.4f} ({r['recordings']} recordings)"
        )
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"data": args.data, **r}, indent=1))
    return 0


def run_demo(args) -> int:
    from grukit.apps.speech.run import speech_demo
    from grukit.data.speech import fsdd
    from grukit.train.distributed import context

    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be positive, got {args.epochs}")
    log = log_fn(args)
    out, ctx = Path(args.out), context()
    utts = fsdd(args.data)  # found (or downloaded) before --out is made
    config = {"command": "speech demo", "data": args.data, "epochs": args.epochs, "seed": args.seed}
    with run_folder(out, args.resume, config, ctx):
        speech_demo(
            utts,
            out,
            epochs=args.epochs,
            seed=args.seed,
            log=log,
            resume=args.resume,
            progress="off" if args.quiet else "auto",
            is_main=ctx.is_main,
        )
    return 0
