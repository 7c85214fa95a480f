"""Speech runs as ``grukit speech train`` and ``grukit speech demo`` make them: train, measure on
held-out recordings beside classical baselines fitted in the same run, draw, and write the model,
``metrics.json`` and the figures into one folder (rank 0 only under ``torchrun``).

- :func:`classify_run`: isolated words. The GRU's accuracy, confusion matrix and per-speaker
  accuracy beside two pooled-MFCC baselines and MFCC + DTW 1-nearest-neighbour, the accuracy under added white noise (20, 10, 5 dB
  SNR) and played 10% slower and faster, and one recording's class posterior over time.
- :func:`speakers_run`: leave-one-speaker-out, one model per speaker held out; mean accuracy and
  the worst speaker, for the GRU and the baselines.
- :func:`transcribe_run`: strings of words (CTC): word error rate and sentence accuracy with
  greedy and beam decoding, streaming recognition's real-time factor and the delay from the end
  of each word to its emission, and one string's spectrogram with its alignment.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from grukit._io import atomic_write_text

__all__ = [
    "classify_run",
    "speakers_run",
    "transcribe_run",
    "speech_demo",
    "machine",
    "NOISE_SNRS",
    "SPEEDS",
    "string_set",
    "transcript_set",
    "DEMO",
]

NOISE_SNRS = (20.0, 10.0, 5.0)
SPEEDS = (0.9, 1.1)
CHUNK_MS = 100  # streaming: audio arrives in chunks of this many milliseconds
STREAMED = 100  # streaming is measured on the first this many test strings


def machine() -> dict:
    """The CPU, threads and versions, recorded with every measurement."""
    from grukit.bench.report import environment

    env = environment(None)
    return {
        "cpu": env["cpu"],
        "cores": env["cores"],
        "torch_threads": env["torch_threads"],
        "versions": env["versions"],
        "python": env["python"],
    }


def _write_metrics(out: Path, metrics: dict) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))


def _waves(utts, rate: int, log):
    from grukit.data.audio import read_many

    waves, kept, skipped = read_many([u.path for u in utts], rate, log=log)
    return waves, [utts[i] for i in kept], skipped


def _by_speaker(utts, correct) -> dict[str, float]:
    out: dict[str, list] = {}
    for u, ok in zip(utts, correct):
        out.setdefault(u.speaker or "?", []).append(bool(ok))
    return {s: float(np.mean(v)) for s, v in sorted(out.items())}


def classify_run(
    train,
    test,
    rec,
    out: Path,
    *,
    resume: bool = False,
    title: str = "speech",
    robustness: bool = True,
    dtw_robustness: bool = True,
    log=print,
    is_main: bool = True,
) -> dict:
    """Train ``rec`` (classify) on the Utterances ``train``, measure on ``test`` (module
    docstring); returns the metrics. ``dtw_robustness=False`` leaves the DTW baseline (about
    10 s per condition on FSDD) out of the noise and speed conditions."""
    from grukit.apps.speech.baselines import fit_baselines

    rate = rec.config.sample_rate
    waves, train, skipped = _waves(train, rate, log)
    t0 = time.perf_counter()
    rec.fit(waves, [u.text for u in train], out_dir=out, resume=resume, log=log)
    fit_seconds = time.perf_counter() - t0
    if not is_main:
        return {}
    test_waves, test, test_skipped = _waves(test, rate, log)
    labels = [u.text for u in test]
    ours = rec.evaluate(test_waves, labels)
    correct = [p == t for p, t in zip(ours["predictions"], labels)]
    log(
        "baselines: pooled MFCC statistics with logistic regression and 1-nearest-neighbour; "
        "MFCC frames with dynamic-time-warping 1-nearest-neighbour"
    )
    b0 = time.perf_counter()
    base = fit_baselines(waves, [u.text for u in train], rate, seed=rec.train_config.seed, dtw=True)
    base_pred = base.predict(test_waves)
    base_seconds = time.perf_counter() - b0
    baselines = {
        name: {
            "accuracy": float(np.mean([p == t for p, t in zip(pred, labels)])),
            "per_speaker": _by_speaker(test, [p == t for p, t in zip(pred, labels)]),
        }
        for name, pred in base_pred.items()
    }
    per_speaker = _by_speaker(test, correct)
    metrics = {
        "title": title,
        "task": "classify",
        "train_recordings": len(train),
        "test_recordings": len(test),
        "skipped_files": [list(s) for s in skipped + test_skipped],
        "classes": ours["classes"],
        "accuracy": ours["accuracy"],
        "errors": int(len(labels) - sum(correct)),
        "per_speaker": per_speaker,
        "confusion": ours["confusion"],
        "baselines": baselines,
        "parameters": rec.num_parameters,
        "model": rec.config.resolved(),
        "train": rec.train_config.to_dict(),
        "epochs": rec.result_.epochs_run,
        "best_epoch": rec.result_.best_epoch,
        "stopped": rec.result_.stopped,
        "fit_seconds": round(fit_seconds, 1),
        "baseline_seconds": round(base_seconds, 1),
        "machine": machine(),
    }
    if robustness:
        from dataclasses import replace

        from grukit.apps.speech.baselines import BASELINE_NAMES

        shown = base if dtw_robustness else replace(base, names=BASELINE_NAMES)
        metrics["robustness"] = _robustness(rec, shown, test_waves, labels, rate)
    rec.save(out)
    _classify_figures(
        rec, out, ours, per_speaker, baselines, metrics.get("robustness"), test_waves, test, title
    )
    _write_metrics(out, metrics)
    return metrics


def _robustness(rec, base, waves, labels, rate: int) -> dict:
    """Accuracy of the GRU and the baselines on the test recordings with white noise added at
    each SNR (the same noise for every model) and played slower and faster."""
    from grukit.data.audio import add_noise, change_speed

    conditions = {"clean": waves}
    rng = np.random.default_rng(12345)
    for snr in NOISE_SNRS:
        conditions[f"{snr:g} dB"] = [add_noise(w, snr, rng) for w in waves]
    for s in SPEEDS:
        conditions[f"speed {s:g}"] = [change_speed(w, s) for w in waves]
    out: dict[str, dict] = {"GRU": {}}
    for name, ws in conditions.items():
        pred = rec.predict(ws)
        out["GRU"][name] = float(np.mean([p == t for p, t in zip(pred, labels)]))
        for bname, bpred in base.predict(ws).items():
            out.setdefault(bname, {})[name] = float(np.mean([p == t for p, t in zip(bpred, labels)]))
    return out


def _classify_figures(rec, out, ours, per_speaker, baselines, robustness, waves, test, title) -> None:
    from grukit.apps.speech import figures

    figures.confusion_figure(
        np.array(ours["confusion"]),
        ours["classes"],
        out / "confusion.png",
        title=f"{title}: GRU on the test recordings",
    )
    if len(per_speaker) > 1 or "?" not in per_speaker:
        figures.per_speaker_figure(
            {"GRU": per_speaker, **{k: v["per_speaker"] for k, v in baselines.items()}},
            out / "per_speaker.png",
            title=f"{title}: accuracy per speaker",
        )
    if robustness:
        figures.robustness_figure(robustness, out / "robustness.png", title=f"{title}: noise and speed")
    _posterior_example(rec, waves[0], out / "posterior.png", f"{title}: {Path(test[0].path).name}")


def _logmel(rec, wave) -> np.ndarray:
    from grukit.apps.speech.features import FeatureConfig, Features

    cfg = rec.config
    feats = Features(FeatureConfig(kind="logmel", sample_rate=cfg.sample_rate, n_mels=cfg.n_mels))
    with torch.no_grad():
        f, _ = feats(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])
    return f[0].numpy()


def _step_seconds(rec) -> float:
    fc = rec.config.feature_config()
    return rec.config.stack * fc.hop_length / rec.config.sample_rate


def _posterior_example(rec, wave, path: Path, title: str) -> None:
    from grukit.apps.speech import figures

    figures.posterior_figure(
        wave,
        rec.config.sample_rate,
        _logmel(rec, wave),
        rec.frame_posteriors(wave),
        list(rec.labels_),
        _step_seconds(rec),
        path,
        title=title,
    )


def speakers_run(
    utts, make, out: Path, *, resume: bool = False, title: str = "speech", log=print, is_main: bool = True
) -> dict:
    """Leave-one-speaker-out: for each speaker, ``make()`` (a fresh recognizer) trained on the
    others and tested on that speaker, beside the baselines; each fold in ``out/<speaker>/``
    (a finished fold is kept when resuming). Returns the metrics."""
    from grukit.data.speech import speaker_split, speakers

    folds = {}
    for s in speakers(utts):
        fold_dir = out / f"speaker-{s}"
        done = fold_dir / "metrics.json"
        if resume and done.is_file():
            folds[s] = json.loads(done.read_text())
            log(f"fold {s}: already measured")
            continue
        log(f"fold {s}: train on the other speakers, test on {s}")
        train, test = speaker_split(utts, s)
        fold_dir.mkdir(parents=True, exist_ok=True)
        folds[s] = classify_run(
            train,
            test,
            make(),
            fold_dir,
            resume=resume and fold_dir.exists(),
            title=f"{title}, {s} held out",
            robustness=False,
            log=log,
            is_main=is_main,
        )
    if not is_main:
        return {}
    names = list(next(iter(folds.values()))["baselines"])
    acc = {"GRU": {s: f["accuracy"] for s, f in folds.items()}}
    for n in names:
        acc[n] = {s: f["baselines"][n]["accuracy"] for s, f in folds.items()}
    summary = {
        m: {
            "mean": float(np.mean(list(v.values()))),
            "worst_speaker": min(v, key=v.get),
            "worst": float(min(v.values())),
            "per_speaker": v,
        }
        for m, v in acc.items()
    }
    metrics = {
        "title": title,
        "task": "classify",
        "protocol": "leave one speaker out",
        "folds": len(folds),
        "summary": summary,
        "machine": machine(),
    }
    from grukit.apps.speech import figures

    figures.per_speaker_figure(
        acc, out / "per_speaker.png", title=f"{title}: each speaker held out of training"
    )
    _write_metrics(out, metrics)
    return metrics


def string_set(utts, count: int, rate: int, seed: int, log=print) -> tuple[list, list, list]:
    """``count`` strings of 3-7 words joined from the word recordings ``utts`` with random
    pauses (``grukit.data.speech.connected_digits``): (recordings, transcripts, where each word
    is: [(first sample, end sample), ...] per string)."""
    from grukit.data.speech import connected_digits

    waves, utts, _ = _waves(utts, rate, log)
    made = connected_digits(waves, [u.text for u in utts], count=count, rate=rate, seed=seed, segments=True)
    return [m[0] for m in made], [m[1] for m in made], [m[2] for m in made]


def transcript_set(utts, rate: int, log=print) -> tuple[list, list, None]:
    """Recordings of a transcript manifest and their transcripts (word positions unknown)."""
    waves, utts, _ = _waves(utts, rate, log)
    return waves, [u.text for u in utts], None


def transcribe_run(
    train: tuple,
    tests: dict,
    rec,
    out: Path,
    *,
    resume: bool = False,
    title: str = "speech",
    log=print,
    is_main: bool = True,
) -> dict:
    """Train ``rec`` (transcribe) on ``train`` = (recordings, transcripts, ...); measure on each
    of ``tests`` = {name: (recordings, transcripts, word positions or None)}; returns the metrics."""
    waves, texts = train[0], train[1]
    t0 = time.perf_counter()
    rec.fit(waves, texts, out_dir=out, resume=resume, log=log)
    fit_seconds = time.perf_counter() - t0
    if not is_main:
        return {}
    results = {}
    for name, (tw, tt, _) in tests.items():
        greedy = rec.evaluate(tw, tt, decode="greedy")
        beam = rec.evaluate(tw, tt, decode="beam")
        results[name] = {
            "recordings": len(tw),
            "words": beam["words"],
            "greedy": {
                k: greedy[k] for k in ("wer", "sentence_accuracy", "substitutions", "deletions", "insertions")
            },
            "beam": {
                k: beam[k] for k in ("wer", "sentence_accuracy", "substitutions", "deletions", "insertions")
            },
            "examples": [
                {"truth": t, "greedy": g, "beam": b}
                for t, g, b in list(zip(tt, greedy["predictions"], beam["predictions"]))[:5]
            ],
        }
    metrics = {
        "title": title,
        "task": "transcribe",
        "train_recordings": len(waves),
        "tests": results,
        "parameters": rec.num_parameters,
        "model": rec.config.resolved(),
        "train": rec.train_config.to_dict(),
        "epochs": rec.result_.epochs_run,
        "best_epoch": rec.result_.best_epoch,
        "stopped": rec.result_.stopped,
        "fit_seconds": round(fit_seconds, 1),
        "machine": machine(),
    }
    first = next(iter(tests.values()))
    if rec.config.streamable:
        metrics["streaming"] = streaming_measure(
            rec, first[0][:STREAMED], first[1][:STREAMED], first[2][:STREAMED] if first[2] else None
        )
    rec.save(out)
    _alignment_example(rec, first[0][0], first[1][0], out / "alignment.png", title)
    _write_metrics(out, metrics)
    return metrics


def streaming_measure(rec, waves, texts, where=None) -> dict:
    """Push each recording through ``rec.stream()`` in CHUNK_MS chunks, as a live source would
    deliver them: whether the words equal the offline greedy transcript, the real-time factor
    (compute seconds per audio second) and, where the words' positions are known, the delay from
    the end of each word to its emission. A word is emitted when the chunk holding its step has
    arrived and been computed: delay = (end of that chunk + its compute time) - end of the word,
    over the strings whose streamed transcript is right (so words pair up). A first chunk of
    silence through a separate stream comes before (``startup_ms``): it pays the kernels'
    one-time compilation or cache load, a start-up cost, not a per-chunk one."""
    rate = rec.config.sample_rate
    step = int(rate * CHUNK_MS / 1000)
    c0 = time.perf_counter()
    warm = rec.stream()
    warm.push(np.zeros(step, np.float32))
    warm.finish()
    startup = time.perf_counter() - c0
    stream = rec.stream()
    same, compute, audio, per_chunk, delays = 0, 0.0, 0.0, [], []
    offline = rec.predict(waves, decode="greedy")
    for k, (w, ref) in enumerate(zip(waves, offline)):
        words, emitted = [], []
        for a in range(0, len(w), step):
            c0 = time.perf_counter()
            got = stream.push(w[a : a + step])
            dt = time.perf_counter() - c0
            per_chunk.append(dt)
            compute += dt
            words += got
            emitted += [min(a + step, len(w)) / rate + dt] * len(got)
        words += stream.finish()
        audio += len(w) / rate
        said = " ".join(x.text for x in words)
        same += said == ref
        if where is not None and said == texts[k]:
            delays += [e - end / rate for e, (_, end) in zip(emitted, where[k])]
    out = {
        "chunk_ms": CHUNK_MS,
        "recordings": len(waves),
        "equal_to_offline_greedy": same,
        "real_time_factor": compute / audio,
        "median_chunk_ms": 1000 * float(np.median(per_chunk)),
        "p95_chunk_ms": 1000 * float(np.percentile(per_chunk, 95)),
        "startup_ms": 1000 * startup,
    }
    if delays:
        out.update(
            words_timed=len(delays),
            median_delay_ms=1000 * float(np.median(delays)),
            p90_delay_ms=1000 * float(np.percentile(delays, 90)),
        )
    return out


def _alignment_example(rec, wave, truth: str, path: Path, title: str) -> None:
    from grukit.apps.speech import figures

    figures.alignment_figure(
        wave,
        rec.config.sample_rate,
        _logmel(rec, wave),
        rec.frame_posteriors(wave),
        list(rec.labels_),
        _step_seconds(rec),
        path,
        title=f'{title}: "{truth}" -> "{rec.predict([wave])[0]}"',
    )


# The demo's models and data (a few minutes on 2 cores in all): isolated digits on FSDD's
# official split, the same with one speaker never heard in training, and strings of digits. The
# strings model is the first default (log-mels, no augmentation): on the demo's 1,000 strings
# and 16 epochs (about 1,000 updates) CTC with the defaults was still on its all-blank plateau at
# the end (log-mel with SpecAugment, noise and speed perturbation: 93% digit errors; MFCC with
# them and volume perturbation, or with no augmentation: validation loss 12.4), where log-mels
# without augmentation left it at epoch 7; the full runs left it after 500-1,100 updates.
DEMO = {
    "hidden_size": 96,
    "epochs": 10,
    "strings_epochs": 16,
    "holdout": "theo",
    "strings": 1000,
    "test_strings": 200,
}


def speech_demo(
    utts,
    out: Path,
    *,
    epochs: int | None = None,
    seed: int = 0,
    log=print,
    progress: str = "auto",
    resume: bool = False,
    is_main: bool = True,
) -> dict:
    """FSDD three ways into ``out/digits``, ``out/speaker-<name>`` and ``out/strings``, with a
    summary in ``out/metrics.json``; returns the three runs' metrics."""
    from grukit.apps.speech.estimator import GRUSpeechRecognizer
    from grukit.data.speech import official_split, speaker_split

    train_cfg = {"epochs": epochs or DEMO["epochs"], "seed": seed, "progress": progress}

    def make(task):
        if task == "classify":
            return GRUSpeechRecognizer(task=task, train=train_cfg, hidden_size=DEMO["hidden_size"])
        tc = train_cfg if epochs else {**train_cfg, "epochs": DEMO["strings_epochs"]}
        return GRUSpeechRecognizer(
            task=task,
            train=tc,
            hidden_size=DEMO["hidden_size"],
            spec_augment=False,
            noise_snr=None,
            speed_perturb=0.0,
            volume_perturb=0.0,
            features="logmel",
        )

    held = DEMO["holdout"]
    runs = {}
    log(
        "speech 1/3: isolated digits, FSDD's official split (recordings 0-4 of each speaker are the test set)"
    )
    train, test = official_split(utts)
    runs["digits"] = classify_run(
        train,
        test,
        make("classify"),
        _sub(out / "digits", is_main),
        resume=resume,
        title="FSDD digits",
        dtw_robustness=False,
        log=log,
        is_main=is_main,
    )
    log(f"speech 2/3: isolated digits, speaker {held} never heard in training")
    train, test = speaker_split(utts, held)
    runs["speaker"] = classify_run(
        train,
        test,
        make("classify"),
        _sub(out / f"speaker-{held}", is_main),
        resume=resume,
        title=f"FSDD digits, {held} held out",
        robustness=False,
        log=log,
        is_main=is_main,
    )
    log("speech 3/3: strings of 3-7 digits, CTC")
    rate = 8000
    train, test = official_split([u for u in utts if u.speaker != held])
    others = [u for u in utts if u.speaker == held]
    tests = {
        "held-out recordings": string_set(test, DEMO["test_strings"], rate, seed + 1, log),
        f"speaker {held} (held out)": string_set(others, DEMO["test_strings"], rate, seed + 2, log),
    }
    runs["strings"] = transcribe_run(
        string_set(train, DEMO["strings"], rate, seed, log),
        tests,
        make("transcribe"),
        _sub(out / "strings", is_main),
        resume=resume,
        title="FSDD digit strings",
        log=log,
        is_main=is_main,
    )
    if is_main:
        _write_metrics(
            out,
            {
                "digits": _brief(runs["digits"]),
                "speaker": _brief(runs["speaker"]),
                "strings": {k: v["beam"] for k, v in runs["strings"]["tests"].items()},
                "streaming": runs["strings"].get("streaming"),
                "machine": machine(),
            },
        )
    return runs


def _sub(path: Path, is_main: bool) -> Path:
    if is_main:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _brief(m: dict) -> dict:
    return {
        "accuracy": m["accuracy"],
        "errors": m["errors"],
        "test_recordings": m["test_recordings"],
        "baselines": {k: v["accuracy"] for k, v in m["baselines"].items()},
    }
