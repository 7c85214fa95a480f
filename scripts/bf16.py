"""bfloat16 products against float32: speed, output accuracy, and a trained language model's loss.

    .venv/bin/python scripts/bf16.py                 # all three parts (~10 min on 2 cores)
    .venv/bin/python scripts/bf16.py --parts speed accuracy --rounds 7
    .venv/bin/python scripts/bf16.py --parts lm --lm-steps 300

``gemm``: MKL's bfloat16 product alone against ``torch.mm`` in float32, at 1 and all threads.
``speed``: the standard grid's batched cases, ``grukit.GRU`` in float32 and with
``matmul_dtype=torch.bfloat16``, inference and training (forward + backward), interleaved rounds,
median ms per call, at ``torch.get_num_threads()`` threads. ``accuracy``: the largest absolute
difference of each output from a float64 run of the same weights, for float32 and for bfloat16
products. ``lm``: a character model on char-PTB (H = 256) trained for a fixed number of steps in
float32 and again with the trainer's ``precision="bf16"`` (bfloat16 autocast around each step's
forward pass and loss); each is scored (bits per character on the first 100,000 validation
characters) in float32 and with bfloat16 products.

On a CPU without AVX512-BF16 or AMX the bfloat16 products are forced (``GRUKIT_BF16=always``)
and MKL emulates them: the speed part then measures the emulation (the option stays off there by
default), the accuracy parts what any CPU computes. The machine is printed first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("GRUKIT_BF16", "always")

import torch  # noqa: E402

import grukit  # noqa: E402
from grukit.backends import _bf16  # noqa: E402
from grukit.bench.report import cpu_features  # noqa: E402

CASES = [(32, 100, 64, 256), (64, 200, 256, 512), (256, 50, 128, 128), (16, 100, 1024, 1024)]
SCORED = 100_000


def _pair(N, T, I, H, reset_after):
    torch.manual_seed(0)
    m32 = grukit.GRU(I, H, reset_after=reset_after, backend="cpu")
    m16 = grukit.GRU(I, H, reset_after=reset_after, backend="cpu", matmul_dtype=torch.bfloat16)
    m16.load_state_dict(m32.state_dict())
    return m32, m16, torch.randn(T, N, I)


def _call(m, x, train):
    if train:
        m.zero_grad(set_to_none=True)
        m(x)[0].sum().backward()
    else:
        with torch.no_grad():
            m(x)


def gemm(rounds: int) -> None:
    from grukit.backends._cpu_base import bf16_linear

    print(
        "\n## MKL's bfloat16 product alone, with its operands' conversion (GFLOP/s, best of the "
        "rounds; x (M, K) @ w (P, K)^T)"
    )
    print("| M, K, P | threads | float32 (torch.mm) | bfloat16 operands (gemm_bf16bf16f32) |")
    print("|---|---:|---:|---:|")
    all_threads = torch.get_num_threads()
    for M, K, P in [(64, 512, 1536), (16, 1024, 3072), (12800, 256, 1536)]:
        a, w = torch.randn(M, K), torch.randn(P, K)
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            best = {}
            for name, fn in (("32", lambda: torch.mm(a, w.t())), ("16", lambda: bf16_linear(a, w, None))):
                fn()
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                best[name] = 2 * M * K * P / min(times) / 1e9
            print(f"| {M}, {K}, {P} | {threads} | {best['32']:.1f} | {best['16']:.1f} |", flush=True)


def speed(rounds: int) -> None:
    print("\n## speed (median ms per call; speed-up = float32 / bfloat16, above 1: bfloat16 faster)")
    print("| case (N, T, I, H) | form | mode | float32 ms | bfloat16 ms | bf16 speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for N, T, I, H in CASES:
        for ra in (True, False):
            m32, m16, x = _pair(N, T, I, H, ra)
            for train in (False, True):
                times = {"32": [], "16": []}
                for m in (m32, m16):
                    _call(m, x, train)  # compile, warm up
                for _ in range(rounds):
                    for key, m in (("32", m32), ("16", m16)):
                        t0 = time.perf_counter()
                        _call(m, x, train)
                        times[key].append(time.perf_counter() - t0)
                a, b = statistics.median(times["32"]) * 1e3, statistics.median(times["16"]) * 1e3
                print(
                    f"| {N}, {T}, {I}, {H} | {'after' if ra else 'before'} | "
                    f"{'training' if train else 'inference'} | {a:.2f} | {b:.2f} | {a / b:.2f}x |",
                    flush=True,
                )


def accuracy() -> None:
    print("\n## accuracy (largest |output - float64 output|; weights PyTorch's init, x ~ N(0, 1))")
    print("| case (N, T, I, H) | form | float32 | bfloat16 products | ratio |")
    print("|---|---|---:|---:|---:|")
    for N, T, I, H in CASES:
        for ra in (True, False):
            m32, m16, x = _pair(N, T, I, H, ra)
            m64 = grukit.GRU(I, H, reset_after=ra, backend="cpu", dtype=torch.float64)
            m64.load_state_dict({k: v.double() for k, v in m32.state_dict().items()})
            with torch.no_grad():
                y64 = m64(x.double())[0]
                e32 = (m32(x)[0].double() - y64).abs().max().item()
                e16 = (m16(x)[0].double() - y64).abs().max().item()
            print(
                f"| {N}, {T}, {I}, {H} | {'after' if ra else 'before'} | {e32:.2e} | {e16:.2e} | "
                f"{e16 / e32:.0f}x |",
                flush=True,
            )


def _score(lm, valid) -> tuple[float, float]:
    """Validation bpc with float32 products, then with bfloat16 products."""
    grus = [m for m in lm.net_.modules() if isinstance(m, grukit.GRU)]
    out = []
    for dtype in (None, torch.bfloat16):
        for g in grus:
            g.matmul_dtype = dtype
        out.append(lm.evaluate(valid)["bpc"])
    for g in grus:
        g.matmul_dtype = None
    return out[0], out[1]


def language_model(steps: int, epochs: int) -> None:
    from grukit.apps.text import GRULanguageModel
    from grukit.data.text import char_ptb

    ptb = char_ptb()
    valid = ptb["valid"][:SCORED]
    print(
        f"\n## a trained model: char-PTB, H = 256, batch 64, {epochs} epochs of {steps} steps, "
        f"bpc on the first {SCORED:,} validation characters"
    )
    print("| trained | seconds | scored in float32 | scored with bfloat16 products |")
    print("|---|---:|---:|---:|")
    for precision in ("float32", "bf16"):  # bf16: the trainer's autocast around each step
        lm = GRULanguageModel(
            hidden_size=256,
            train=dict(
                batch_size=64,
                lr=3e-3,
                epochs=epochs,
                steps_per_epoch=steps,
                patience=None,
                progress="off",
                precision=precision,
            ),
        )
        t0 = time.perf_counter()
        lm.fit(ptb["train"], valid=valid, also=[ptb["valid"], ptb["test"]])
        seconds = time.perf_counter() - t0
        a, b = _score(lm, valid)
        print(f"| precision={precision} | {seconds:.0f} | {a:.5f} | {b:.5f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("gemm", "speed", "accuracy", "lm"),
        default=["gemm", "speed", "accuracy", "lm"],
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--lm-steps", type=int, default=100, help="training steps per epoch")
    p.add_argument("--lm-epochs", type=int, default=3)
    args = p.parse_args()
    cpu, flags = cpu_features()
    print(
        f"machine: {cpu}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}; "
        f"extensions {' '.join(flags)}; bfloat16 in hardware: {_bf16.hardware()}; "
        f"GRUKIT_BF16={_bf16.mode()}; torch {torch.__version__}"
    )
    threads = torch.get_num_threads()
    if "gemm" in args.parts:
        gemm(args.rounds)
        torch.set_num_threads(threads)
    if "speed" in args.parts:
        speed(args.rounds)
    if "accuracy" in args.parts:
        accuracy()
    if "lm" in args.parts:
        language_model(args.lm_steps, args.lm_epochs)


if __name__ == "__main__":
    main()
