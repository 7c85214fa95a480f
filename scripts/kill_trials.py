"""Fault trials of every application's ``train`` (issue 19, section 2): killed, disk full, read-only.

For each application (forecast, anomaly, text, speech) on small generated data:

1. **Reference**: ``grukit <app> train`` runs uninterrupted; its ``model.safetensors`` is the
   result every faulted run must reproduce, bit for bit.
2. **Kills** (``--trials N``): each trial starts the run and kills it with SIGKILL at a random
   moment (uniform over the reference run's duration, so before the first checkpoint too), one
   to ``--kills`` times in a row; after every kill each checkpoint pointer in the folder must
   load (``grukit.train.checkpoint.load``); the run is then restarted as a user would: the same
   command with ``--resume`` when a checkpoint exists, the plain command when none does (a
   folder left before the first checkpoint must be accepted). The finished run's weights must
   equal the reference's.
3. **Disk full** and **read-only** (``--faults``; needs a small ``tmpfs``: root, or a user
   namespace through ``unshare``; reported as not run otherwise): the run writes into a tmpfs;
   after its first checkpoint the tmpfs is filled to the last byte (or remounted read-only).
   The run must end with one line on stderr and exit status 2, every checkpoint pointer must
   still load, and after the space is freed (or the mount made writable again) ``--resume``
   must finish with the reference's weights.

Every run has ``OMP_NUM_THREADS=1`` unless the environment sets it. Counts go to stdout as a
Markdown table (and ``--json FILE``); a failed check is listed with what went wrong and the
script exits 1.

    .venv/bin/python scripts/kill_trials.py                         # 10 trials per application
    .venv/bin/python scripts/kill_trials.py --apps text --trials 3 --kills 2 --no-faults
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

APPS = ("forecast", "anomaly", "text", "speech")
DDP_APPS = APPS
RATE = 8000


# -- data and commands -----------------------------------------------------------------------


def make_data(app: str, root: Path) -> Path:
    """Small generated data for ``app``'s ``train``."""
    rng = np.random.default_rng(0)
    if app == "forecast":
        rows = ["id,time,value"]
        for s in range(6):
            t = np.arange(80)
            v = 10 + np.sin(2 * np.pi * t / 4 + s) + 0.1 * rng.standard_normal(80)
            rows += [f"s{s},{i},{x:.5f}" for i, x in zip(t, v)]
        path = root / "series.csv"
        path.write_text("\n".join(rows) + "\n")
    elif app == "anomaly":
        t = np.arange(3000)
        v = np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(len(t))
        v[2500:2505] += 3
        path = root / "signal.csv"
        path.write_text("value\n" + "\n".join(f"{x:.5f}" for x in v) + "\n")
    elif app == "text":
        words = "the cat sat on the mat and the dog ran to the park while a bird sang".split()
        path = root / "text.txt"
        path.write_text(" ".join(rng.choice(words, 4000)) + "\n")
    else:
        import soundfile as sf

        path = root / "words"
        for word, f in {"low": 400.0, "mid": 1000.0, "high": 2200.0}.items():
            (path / word).mkdir(parents=True)
            for k in range(12):
                t = np.arange(int(rng.uniform(0.2, 0.4) * RATE)) / RATE
                x = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
                sf.write(
                    path / word / f"{k}.wav",
                    (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32),
                    RATE,
                    subtype="PCM_16",
                )
    return path


def train_args(app: str, data: Path, out: Path) -> list[str]:
    common = ["--data", str(data), "--out", str(out), "--quiet"]
    if app == "forecast":
        return [
            "forecast",
            "train",
            *common,
            "--horizon",
            "4",
            "--season",
            "4",
            "--hidden-size",
            "16",
            "--num-layers",
            "1",
            "--epochs",
            "12",
            "--steps-per-epoch",
            "10",
            "--patience",
            "0",
            "--batch-size",
            "8",
        ]
    if app == "anomaly":
        return [
            "anomaly",
            "train",
            *common,
            "--value-cols",
            "value",
            "--train-until",
            "2000",
            "--window",
            "25",
            "--hidden-size",
            "16",
            "--epochs",
            "20",
            "--no-discord",
        ]
    if app == "text":
        return [
            "text",
            "train",
            *common,
            "--hidden-size",
            "32",
            "--bptt",
            "32",
            "--batch-size",
            "8",
            "--epochs",
            "20",
            "--steps-per-epoch",
            "8",
            "--patience",
            "0",
        ]
    return [
        "speech",
        "train",
        *common,
        "--hidden-size",
        "16",
        "--num-layers",
        "1",
        "--n-mels",
        "20",
        "--epochs",
        "15",
        "--batch-size",
        "16",
        "--speed-perturb",
        "0",
    ]


def grukit(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "grukit", *args]


# -- checks ------------------------------------------------------------------------------------


def weights(out: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(out / "model.safetensors"))


def compare_result(tally: dict, label: str, out: Path, ref: dict) -> None:
    """Count a finished resumed run in ``out``: the same result as the uninterrupted run's
    (``ref``, its weights) bit for bit, or a failure saying what differs."""
    diff = same(weights(out), ref)
    tally["resumed_runs"] += 1
    if diff:
        tally["failures"].append(
            f"{label}: the resumed run's result differs from the uninterrupted run's: {diff}"
        )
    else:
        tally["same_result"] += 1


def same(a: dict, b: dict) -> str | None:
    """None when ``a`` and ``b`` hold the same tensors bit for bit, else what differs."""
    if a.keys() != b.keys():
        return f"different tensors: {sorted(a.keys() ^ b.keys())}"
    for k in a:
        if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]):
            diff = (
                np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()
                if a[k].shape == b[k].shape
                else "shape"
            )
            return f"{k} differs (max {diff})"
    return None


def checkpoints_load(out: Path) -> tuple[int, str | None]:
    """(checkpoint pointers found, the first that does not load or None)."""
    from grukit.train import checkpoint

    found = 0
    for pointer in sorted(out.rglob("*.json")):
        if pointer.name not in ("last.json", "best.json"):
            continue
        found += 1
        try:
            checkpoint.load(pointer.parent, pointer.stem)
        except Exception as exc:  # any failure to read it back is what this script looks for
            return found, f"{pointer}: {type(exc).__name__}: {exc}"
    return found, None


def has_checkpoint(out: Path) -> bool:
    return any(p.name == "last.json" for p in out.rglob("last.json"))


# -- trials ------------------------------------------------------------------------------------


def kill_trial(
    app: str, data: Path, out: Path, ref: dict, duration: float, kills: int, rng: random.Random, tally: dict
) -> None:
    args = train_args(app, data, out)
    for _ in range(kills):
        cmd = grukit(args + (["--resume"] if has_checkpoint(out) else []))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.0, duration)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            tally["kills"] += 1
            tally["kills_before_first_checkpoint"] += not has_checkpoint(out)
        else:
            tally["finished_before_the_kill"] += 1
            if proc.returncode != 0:
                tally["failures"].append(
                    f"{app}: a run ended with {proc.returncode}: {proc.stderr.read()[-500:]}"
                )
                return
            break
        found, bad = checkpoints_load(out)
        tally["checkpoints_checked"] += found
        if bad:
            tally["failures"].append(f"{app}: unreadable after a kill: {bad}")
            tally["unreadable_checkpoints"] += 1
    if not (out / "metrics.json").is_file():  # finish as a user would
        r = subprocess.run(
            grukit(args + (["--resume"] if has_checkpoint(out) else [])), capture_output=True, text=True
        )
        if r.returncode != 0:
            tally["failures"].append(
                f"{app}: the rerun after a kill ended with {r.returncode}: {r.stderr[-500:]}"
            )
            return
    compare_result(tally, app, out, ref)


def _mounter() -> list[str] | None:
    """How to run a command that mounts a tmpfs: directly as root, in a user namespace, or None."""
    probe = tempfile.mkdtemp()
    try:
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], capture_output=True)
            if r.returncode == 0:
                subprocess.run(["umount", probe])
                return []
        if shutil.which("unshare"):
            r = subprocess.run(
                ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe}"],
                capture_output=True,
            )
            if r.returncode == 0:
                return ["unshare", "-rm"]
        return None
    finally:
        os.rmdir(probe)


def fault_trial(app: str, data: Path, work: Path, ref: dict, fault: str, tally: dict) -> None:
    """Run ``app``'s train on a tmpfs, fault it after the first checkpoint, check, then resume.
    Runs as root, or re-executes itself in a user namespace (``--fault-inner``)."""
    mnt = work / f"tmpfs-{fault}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "run"
        args = train_args(app, data, out)
        proc = subprocess.Popen(grukit(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while not has_checkpoint(out) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:
            tally["failures"].append(
                f"{app} {fault}: the run ended before its first checkpoint could be faulted"
            )
            return
        if fault == "disk full":
            with open(mnt / "filler", "wb", buffering=0) as f:  # every free byte
                try:
                    while True:
                        f.write(b"\0" * (1 << 16))
                        f.flush()
                except OSError:
                    pass
                try:
                    while True:
                        f.write(b"\0")
                        f.flush()
                except OSError:
                    pass
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        _, err = proc.communicate(timeout=600)
        lines = [line for line in err.splitlines() if line.strip()]
        tally["faults"] += 1
        if proc.returncode == 0:
            tally["finished_despite_the_fault"] += 1  # it wrote nothing more (possible, but not a check)
        elif proc.returncode != 2 or len(lines) != 1 or not lines[0].startswith("grukit: error:"):
            tally["failures"].append(f"{app} {fault}: exit {proc.returncode}, stderr: {err[-800:]}")
        else:
            tally["clear_errors"] += 1
            tally["messages"].append(f"{app} {fault}: {lines[0]}")
        found, bad = checkpoints_load(out)
        tally["checkpoints_checked"] += found
        if bad or not found:
            tally["unreadable_checkpoints"] += 1
            tally["failures"].append(f"{app} {fault}: no good checkpoint left: {bad or 'none found'}")
            return
        if fault == "disk full":
            (mnt / "filler").unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        if proc.returncode != 0:
            r = subprocess.run(grukit(args + ["--resume"]), capture_output=True, text=True)
            if r.returncode != 0:
                tally["failures"].append(
                    f"{app} {fault}: --resume ended with {r.returncode}: {r.stderr[-500:]}"
                )
                return
        compare_result(tally, f"{app} {fault}", out, ref)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _workers(agent: int) -> dict[int, int]:
    """{rank: pid} of the worker processes a torchrun agent started (read from /proc)."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) != agent:
                continue
            env = dict(
                e.split("=", 1)
                for e in (d / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in e
            )
        except (OSError, IndexError, ValueError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(d.name)
    return found


def torchrun(args: list[str]) -> list[str]:
    return [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "grukit",
        *args,
    ]


def ddp_trial(app: str, data: Path, out: Path, ref: dict, rng: random.Random, tally: dict) -> None:
    """Two processes under torchrun; after the first checkpoint one rank (chosen at random) is
    killed with SIGKILL. The job must end within a minute, the other rank must say what happened
    in one line (a failed collective, or torchrun's SIGTERM when that comes first), the
    checkpoints must load, and a torchrun ``--resume`` must finish with the uninterrupted
    two-process run's weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = train_args(app, data, out)
    proc = subprocess.Popen(
        torchrun(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 600
    while not has_checkpoint(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    ranks = _workers(proc.pid)
    if proc.poll() is not None or len(ranks) != 2:
        proc.kill()
        tally["failures"].append(
            f"{app} ddp: the job ended (or had {len(ranks)} workers) before a rank could be killed"
        )
        return
    victim = rng.choice(sorted(ranks))
    os.kill(ranks[victim], signal.SIGKILL)
    tally["kills"] += 1
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        for pid in _workers(proc.pid).values():
            os.kill(pid, signal.SIGKILL)
        tally["failures"].append(
            f"{app} ddp: the job still ran a minute after rank {victim} was killed (a hang)"
        )
        return
    said = [
        line
        for line in err.splitlines()
        if line.startswith(("grukit: error: process", "grukit: stopped by SIGTERM"))
    ]
    if said:
        tally["clear_errors"] += 1
        tally["messages"].append(f"{app} ddp, rank {victim} killed: {said[0]}")
    else:
        tally["failures"].append(
            f"{app} ddp: rank {victim} killed, no grukit message from the other: {err[-800:]}"
        )
    found, bad = checkpoints_load(out)
    tally["checkpoints_checked"] += found
    if bad or not found:
        tally["unreadable_checkpoints"] += 1
        tally["failures"].append(f"{app} ddp: no good checkpoint left: {bad or 'none found'}")
        return
    r = subprocess.run(torchrun([*args, "--resume"]), capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tally["failures"].append(f"{app} ddp: --resume ended with {r.returncode}: {r.stderr[-800:]}")
        return
    compare_result(tally, f"{app} ddp", out, ref)


def new_tally() -> dict:
    return {
        "kills": 0,
        "kills_before_first_checkpoint": 0,
        "finished_before_the_kill": 0,
        "faults": 0,
        "clear_errors": 0,
        "finished_despite_the_fault": 0,
        "checkpoints_checked": 0,
        "unreadable_checkpoints": 0,
        "resumed_runs": 0,
        "same_result": 0,
        "failures": [],
        "messages": [],
    }


def run_app(app: str, args, work: Path, mounter) -> dict:
    tally = new_tally()
    root = work / app
    root.mkdir()
    data = make_data(app, root)
    t = time.perf_counter()
    r = subprocess.run(grukit(train_args(app, data, root / "reference")), capture_output=True, text=True)
    duration = time.perf_counter() - t
    if r.returncode != 0:
        tally["failures"].append(f"{app}: the reference run failed: {r.stderr[-800:]}")
        return tally
    ref = weights(root / "reference")
    tally["reference_seconds"] = round(duration, 1)
    rng = random.Random(f"{args.seed}-{app}")
    for k in range(args.trials):
        kill_trial(app, data, root / f"trial-{k}", ref, duration, rng.randint(1, args.kills), rng, tally)
    if args.ddp and app in DDP_APPS:
        ref_ddp = root / "reference-ddp"
        r = subprocess.run(
            torchrun(train_args(app, data, ref_ddp)),
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if r.returncode != 0:
            tally["failures"].append(f"{app}: the two-process reference run failed: {r.stderr[-800:]}")
        else:
            for k in range(args.ddp):
                ddp_trial(app, data, root / f"ddp-{k}", weights(ref_ddp), rng, tally)
    tally["fault_trials"] = "not run"
    if args.faults and mounter is not None:
        for fault in ("disk full", "read-only"):
            if mounter:  # a user namespace: this script mounts in a child of its own
                ns = subprocess.run(
                    [*mounter, sys.executable, __file__, "--fault-inner", app, fault, str(data), str(root)],
                    capture_output=True,
                    text=True,
                )
                try:
                    inner = json.loads(ns.stdout.splitlines()[-1])
                except (IndexError, ValueError):
                    tally["failures"].append(f"{app} {fault}: the namespace run failed: {ns.stderr[-800:]}")
                    continue
                for key, value in inner.items():
                    tally[key] = tally[key] + value if isinstance(value, (int, list)) else value
            else:
                fault_trial(app, data, root, ref, fault, tally)
        tally["fault_trials"] = "run"
    elif args.faults:
        tally["fault_trials"] = "not run: mounting a small tmpfs needs root or user namespaces"
    return tally


def _cpu() -> str:
    """The CPU model and its vector extensions, as `grukit bench` records them."""
    from grukit.bench.report import cpu_features

    cpu, flags = cpu_features()
    return f"{cpu} ({', '.join(flags)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    p.add_argument("--trials", type=int, default=10, help="kill trials per application")
    p.add_argument("--kills", type=int, default=3, help="at most this many kills in a row per trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-faults", dest="faults", action="store_false", help="skip the disk-full and read-only trials"
    )
    p.add_argument("--ddp", type=int, default=2, help="torchrun trials (a rank killed) per application")
    p.add_argument("--json", default=None, help="also write the counts here")
    p.add_argument("--fault-inner", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    # one thread per process: two cores shared by a run, its torchrun peer and anything else on
    # the machine make OpenMP's barriers wait for descheduled threads (a step 10x slower)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.fault_inner:  # in a user namespace: one fault trial, its tally as the last line
        app, fault, data, root = args.fault_inner
        tally = new_tally()
        work = Path(tempfile.mkdtemp(dir=root))
        fault_trial(app, Path(data), work, weights(Path(root) / "reference"), fault, tally)
        print(json.dumps({k: v for k, v in tally.items() if v}))
        return 0
    mounter = _mounter() if args.faults else None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for app in args.apps:
            t = time.perf_counter()
            results[app] = run_app(app, args, Path(tmp), mounter)
            results[app]["seconds"] = round(time.perf_counter() - t)
            print(f"{app}: done in {results[app]['seconds']} s", file=sys.stderr)
    import torch

    print(
        f"CPU {_cpu()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}; "
        f"seed {args.seed}, {args.trials} trials per application, 1 to {args.kills} kills each\n"
    )
    cols = [
        "kills",
        "kills_before_first_checkpoint",
        "finished_before_the_kill",
        "faults",
        "clear_errors",
        "checkpoints_checked",
        "unreadable_checkpoints",
        "resumed_runs",
        "same_result",
    ]
    print("| application | " + " | ".join(c.replace("_", " ") for c in cols) + " | failures |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for app, t in results.items():
        print(f"| {app} | " + " | ".join(str(t[c]) for c in cols) + f" | {len(t['failures'])} |")
    for app, t in results.items():
        print(f"\n{app}: reference run {t.get('reference_seconds')} s; fault trials {t['fault_trials']}")
        for m in t["messages"]:
            print(f"  message: {m}")
        for f in t["failures"]:
            print(f"  FAILED: {f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if any(t["failures"] for t in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
