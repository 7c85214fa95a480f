"""The float32 kernels' activations: accuracy and cost (docs/performance.md, "Vectorised elementwise pass").

``_cpu_kernels.act_tanh`` / ``act_sigmoid`` in float32 are a clamped rational function (the form
Eigen uses) computed in float32. This prints

1. their largest absolute error against float64 ``tanh`` and the logistic function over a dense
   grid of float32 inputs in [-12, 12], normal draws and tiny magnitudes;
2. the time of a pass of 3H activations (one row's gates at H = 64 and 256) in a compiled loop,
   for the kernels' float32 form and for the same ratio computed in float64 (what the kernels
   did until 2026-12-08, kept here only to compare), medians of interleaved rounds.

    .venv/bin/python scripts/activations.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import builtins
import statistics
import time
import types

import numpy as np
from numba import njit

from grukit.backends import _cpu_kernels
from grukit.backends._cpu_kernels import act_sigmoid, act_tanh
from grukit.bench.report import cpu_features

_JIT = dict(nogil=True, error_model="numpy")

# the kernels' own ratio (``_cpu_kernels._tanh_rational``'s code) with its coefficients as the
# float64 values they are published as: the ratio computed in float64 (the earlier form)
_tanh_f64 = njit(**dict(_JIT, inline="always"))(
    types.FunctionType(
        _cpu_kernels._tanh_rational.py_func.__code__,
        {"__builtins__": builtins, **_cpu_kernels.TANH_RATIONAL},
        "_tanh_f64",
    )
)


@njit(**_JIT)
def _apply(x, t, s):
    for i in range(x.shape[0]):
        t[i] = act_tanh(x[i])
        s[i] = act_sigmoid(x[i])


@njit(**_JIT)
def _pass_f32(g, out, n):
    """n passes: sigmoid over the first 2H values, tanh over the last H (one row's gates)."""
    H = g.shape[0] // 3
    for _ in range(n):
        for j in range(2 * H):
            out[j] = act_sigmoid(g[j])
        for j in range(2 * H, 3 * H):
            out[j] = act_tanh(g[j])
        g[0] = out[1]  # a dependency from pass to pass, as from step to step


@njit(**_JIT)
def _pass_f64(g, out, n):
    H = g.shape[0] // 3
    for _ in range(n):
        for j in range(2 * H):
            out[j] = 0.5 + 0.5 * _tanh_f64(0.5 * g[j])
        for j in range(2 * H, 3 * H):
            out[j] = _tanh_f64(g[j])
        g[0] = out[1]


def accuracy() -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    tiny = np.float32(10.0) ** rng.uniform(-12, 1, 2_000_000).astype(np.float32)
    xs = np.concatenate(
        [
            np.linspace(-12, 12, 20_000_001, dtype=np.float32),
            (rng.standard_normal(5_000_000) * 3).astype(np.float32),
            tiny * rng.choice(np.array([-1, 1], np.float32), tiny.shape[0]),
        ]
    )
    t, s = np.empty_like(xs), np.empty_like(xs)
    _apply(xs, t, s)
    x64 = xs.astype(np.float64)
    err_t = np.abs(t - np.tanh(x64))
    err_s = np.abs(s - 1.0 / (1.0 + np.exp(-x64)))
    return float(err_t.max()), float(xs[err_t.argmax()]), float(err_s.max())


def cost(H: int, rounds: int, calls: int = 20_000) -> dict[str, float]:
    g = np.random.default_rng(1).standard_normal(3 * H).astype(np.float32)
    out = np.empty_like(g)
    fns = {"float32 (the kernels)": _pass_f32, "float64-computed (before 2026-12-08)": _pass_f64}
    for f in fns.values():
        f(g.copy(), out, 10)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            x = g.copy()
            t0 = time.perf_counter()
            f(x, out, calls)
            times[name].append((time.perf_counter() - t0) / calls * 1e9)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    cpu, flags = cpu_features()
    print(f"CPU: {cpu} ({', '.join(flags)}); medians of {args.rounds} interleaved rounds")
    err_t, at, err_s = accuracy()
    eps = float(np.finfo(np.float32).eps)
    print(f"float32 tanh: largest error {err_t:.3g} ({err_t / eps:.2f} float32 epsilons) at x = {at:.4g}")
    print(f"float32 sigmoid: largest error {err_s:.3g} ({err_s / eps:.2f} float32 epsilons)")
    print()
    print("| H | 3H activations, float32 (ns) | the same ratio computed in float64 (ns) | ratio |")
    print("|---:|---:|---:|---:|")
    for H in (64, 256):
        c = cost(H, args.rounds)
        a, b = c["float32 (the kernels)"], c["float64-computed (before 2026-12-08)"]
        print(f"| {H} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
