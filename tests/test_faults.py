"""A disk that fills up or turns read-only in the middle of training (the short, unprivileged
version of ``scripts/kill_trials.py``'s fault trials, which use a real tmpfs): the command ends
with one line and exit status 2, the last good checkpoint stays readable, and ``--resume``
after the disk is back finishes with the uninterrupted run's weights."""

import errno
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from grukit.cli.main import main
from grukit.train import checkpoint


def _data(path):
    rng = np.random.default_rng(0)
    rows = ["id,time,value"]
    for s in range(4):
        t = np.arange(60)
        rows += [f"s{s},{i},{10 + np.sin(i * np.pi / 2 + s) + 0.1 * rng.standard_normal():.5f}" for i in t]
    path.write_text("\n".join(rows) + "\n")
    return path


def _args(data, out):
    return [
        "forecast",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--horizon",
        "4",
        "--season",
        "4",
        "--hidden-size",
        "8",
        "--num-layers",
        "1",
        "--epochs",
        "3",
        "--steps-per-epoch",
        "6",
        "--patience",
        "0",
        "--batch-size",
        "8",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = _data(root / "d.csv")
    assert main(_args(data, root / "whole")) == 0
    return data, load_file(str(root / "whole" / "model.safetensors"))


@pytest.mark.parametrize(
    "code,where",
    [
        (errno.ENOSPC, "weights"),
        (errno.EROFS, "pointer"),
    ],  # inside the new checkpoint; in the pointer after it
    ids=["disk-full", "read-only"],
)
def test_a_disk_fault_after_the_first_checkpoint_keeps_it_and_resume_finishes_the_run(
    reference, tmp_path, monkeypatch, capsys, where, code
):
    data, whole = reference
    out = tmp_path / "run"
    real = {"weights": checkpoint.save_weights, "pointer": checkpoint.atomic_write_text}[where]
    name = {"weights": "save_weights", "pointer": "atomic_write_text"}[where]

    def failing(*a, **kw):  # the disk goes bad once the first checkpoint is complete
        if (out / "checkpoints" / "last.json").exists():
            raise OSError(code, os.strerror(code), str(a[1] if where == "weights" else a[0]))
        return real(*a, **kw)

    monkeypatch.setattr(checkpoint, name, failing)
    assert main(_args(data, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"grukit: error: {os.strerror(code)}: {out}"), err
    assert err[0].endswith(
        "keeps the checkpoint of epoch 1: rerun the same command with --resume to continue from it"
    )
    weights, _, meta = checkpoint.load(out / "checkpoints")  # the last good one, intact
    assert meta["epoch"] == 1 and weights
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no staging left
    assert not (out / "metrics.json").exists()

    monkeypatch.setattr(checkpoint, name, real)  # the disk is back
    assert main([*_args(data, out), "--resume"]) == 0
    got = load_file(str(out / "model.safetensors"))
    assert got.keys() == whole.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], whole[k], err_msg=k)


def test_sigterm_ends_a_training_run_like_ctrl_c_keeping_its_checkpoint(reference, tmp_path):
    """``kill PID`` on a training run (torchrun stops a job's survivors the same way): one line,
    exit status 143, the checkpoint kept and named. (In a child process: a SIGTERM sent to the
    test process itself once crashed it in the full suite; see docs/reliability.md.)"""
    import signal
    import subprocess
    import sys
    import time

    data, _ = reference
    out = tmp_path / "run"
    args = [*_args(data, out), "--epochs", "200"]
    proc = subprocess.Popen([sys.executable, "-m", "grukit", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"grukit: stopped by SIGTERM; {out} keeps the checkpoint of epoch "
    )
    assert lines[0].endswith(": rerun the same command with --resume to continue from it")
    assert checkpoint.load(out / "checkpoints") is not None


def test_the_cli_restores_the_sigterm_handler_it_found(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["anomaly", "score", "--model", str(tmp_path), "--data", "x.csv", "--out", "y.csv"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_a_rank_killed_under_torchrun_ends_the_job_with_a_message_and_resume_finishes(reference, tmp_path):
    """Rank 1 of two, killed with SIGKILL after the first checkpoint: the job ends (no hang), rank 0
    says in one line what happened and what its folder keeps, and a torchrun ``--resume`` finishes
    with the uninterrupted two-process run's weights."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    data, _ = reference
    torchrun = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "grukit",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*_args(data, tmp_path / "run"), "--epochs", "40"]
    whole = subprocess.run(
        [*torchrun, *_args(data, tmp_path / "whole"), "--epochs", "40"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([*torchrun, *args], env=env, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "run"
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the job ended before its first checkpoint"
        time.sleep(0.01)
    rank1 = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_rank(p, proc.pid, "1")]
    assert len(rank1) == 1
    os.kill(int(rank1[0].name), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)  # a hang fails here
    assert proc.returncode != 0
    said = [line for line in err.splitlines() if line.startswith("grukit:")]
    assert len(said) == 1, err
    # in a collective, rank 0 learns of the loss itself; elsewhere torchrun's SIGTERM reaches it first
    assert said[0].startswith(
        (
            "grukit: error: process 0 of this 2-process torchrun job lost another process",
            "grukit: stopped by SIGTERM (torchrun stops every process of a job when one of them fails)",
        )
    ), said
    assert f"{out} keeps the checkpoint of epoch" in said[0] and "--resume" in said[0]
    assert checkpoint.load(out / "checkpoints") is not None
    done = subprocess.run(
        [*torchrun, *args, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "whole" / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _is_rank(proc_dir, parent: int, rank: str) -> bool:
    try:
        ppid = int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
        env = (proc_dir / "environ").read_bytes().split(b"\0")
    except (OSError, IndexError, ValueError):
        return False
    return ppid == parent and f"RANK={rank}".encode() in env
