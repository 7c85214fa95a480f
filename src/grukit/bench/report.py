"""Benchmark output: the terminal table, CSV and JSON, with machine, versions and threads."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from importlib import metadata

import torch

from grukit.bench.providers import PEERS
from grukit.bench.runner import Result


def cpu_features() -> tuple[str, list[str]]:
    """The CPU's model name and the vector extensions it reports that matter to matrix products
    (AVX2, FMA, AVX-512 and its bf16/VNNI parts, AMX; NEON/SVE on Arm), from /proc/cpuinfo."""
    cpu, flags = platform.processor() or "", []
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
    except OSError:
        return cpu, flags
    cpu = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), cpu)
    line = next((l for l in lines if l.startswith(("flags", "Features"))), "")
    wanted = ("sse4_2", "avx", "fma", "amx", "neon", "asimd", "sve")
    flags = sorted({w for w in line.split(":", 1)[-1].split() if w.startswith(wanted)})
    return cpu, flags


def environment(
    peaks: dict[str, float] | None = None, threads: list[int] | None = None, isolated: bool | None = None
) -> dict:
    """Machine, vector extensions, versions and thread counts, recorded with every result;
    ``peaks``: matrix-product rates measured in the same run (GFLOP/s, by dtype and threads)."""
    cpu, flags = cpu_features()
    versions = {}
    for pkg in ("grukit", "torch", "numpy", "numba", "onnxruntime", "onnx", "openvino"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "vector_extensions": flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "threads_tried": threads,  # every provider at each; its fastest is its result
        "isolated": isolated,  # each provider in its own process
        "ort_spinning": None if isolated is None else bool(isolated),
        "openvino_precision": "f32",
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "matmul_peak_gflops": peaks,
    }


def _key(r: Result) -> tuple:
    return (r.case, r.formulation, r.mode)


def fastest(results: list[Result]) -> dict[tuple, Result]:
    """(case, formulation, mode, provider) -> that provider's fastest thread count's result."""
    best: dict[tuple, Result] = {}
    for r in results:
        if r.skipped is None:
            k = _key(r) + (r.provider,)
            if k not in best or r.median < best[k].median:
                best[k] = r
    return best


def _ratios(results: list[Result], best: dict[tuple, Result]) -> dict[int, dict[str, float]]:
    """Per result: how many times faster it is than each peer at the peer's best thread count
    (``best``: ``fastest(results)``), and, for grukit, than the best peer of all; for a variant,
    its cost over the plain GRU's."""
    out = {}
    for r in results:
        if r.skipped:
            continue
        ratios = {}
        peers = [best[_key(r) + (p,)] for p in PEERS if p != r.provider and _key(r) + (p,) in best]
        for p in peers:
            ratios[f"speedup_vs_{p.provider}"] = p.median / r.median
        if peers and r.provider not in PEERS:
            ratios["speedup_vs_best_peer"] = min(p.median for p in peers) / r.median
        plain = best.get(_key(r) + ("grukit-cpu",))
        if r.provider.startswith("grukit-cpu[") and plain is not None:
            ratios["cost_vs_plain"] = r.median / plain.median  # > 1: slower than the plain GRU
        out[id(r)] = ratios
    return out


def rows(results: list[Result]) -> list[dict]:
    best = fastest(results)
    ratios = _ratios(results, best)
    table = []
    for r in results:
        row = {
            "case": r.case.label,
            **r.case.as_dict(),
            "formulation": r.formulation,
            "mode": r.mode,
            "provider": r.provider,
            "threads": r.threads,
        }
        if r.skipped:
            row["skipped"] = r.skipped
        else:
            row.update(
                median_ms=r.median * 1e3,
                spread=r.spread,
                gflops=r.gflops,
                rounds=len(r.times),
                first_call_s=r.first_call_s,
                peak_mb=r.peak_mb,
                fastest=best[_key(r) + (r.provider,)] is r,
            )
            row.update(ratios[id(r)])
        table.append(row)
    return table


def table(results: list[Result], peaks: dict[int, float] | None = None) -> str:
    """Every provider at every thread count; * marks each provider's fastest, the one its
    speed-ups are computed from. ``peaks``: threads -> float32 matrix-product GFLOP/s (%peak)."""
    lines = []
    variants = any(r.provider.startswith("grukit-cpu[") for r in results)
    width = 30 if variants else 16
    head = (
        f"{'case':<24} {'form':<6} {'mode':<9} {'provider':<{width}} {'thr':>3} {'median ms':>10} "
        f"{'spread':>7} {'GFLOP/s':>8} {'%peak':>6} {'vs torch':>9} {'vs ORT':>7} {'vs OV':>7} "
        f"{'peak MB':>8}" + (f" {'vs plain':>9}" if variants else "")
    )
    lines += [head, "-" * len(head)]
    for row in rows(results):
        if "skipped" in row:
            continue
        label = f"{row['case']:<24} {row['formulation']:<6} {row['mode']:<9} {row['provider']:<{width}}"
        peak = (peaks or {}).get(row["threads"])
        pct = 100 * row["gflops"] / peak if peak else float("nan")
        mem = f"{row['peak_mb']:8.1f}" if row.get("peak_mb") is not None else f"{'':>8}"
        star = "*" if row["fastest"] else " "
        lines.append(
            f"{label} {row['threads']:>3} {row['median_ms']:9.2f}{star} {100 * row['spread']:6.0f}% "
            f"{row['gflops']:8.1f} {pct:5.0f}% {_x(row.get('speedup_vs_torch')):>9} "
            f"{_x(row.get('speedup_vs_ort')):>7} {_x(row.get('speedup_vs_openvino')):>7} {mem}"
            + (f" {_x(row.get('cost_vs_plain')):>9}" if variants else "")
        )
    skipped = sorted({f"{r.provider}: {r.skipped}" for r in results if r.skipped})
    if skipped:
        lines.append("")
        lines.append("not run: " + "; ".join(skipped))
    return "\n".join(lines)


def variants_markdown(results: list[Result]) -> str:
    """One row per (case, formulation, mode): the plain grukit-cpu time and each variant's time
    as a multiple of it, each at its fastest thread count (``grukit bench --variants``)."""
    groups: dict[tuple, dict[str, Result]] = {}
    for (case, form, mode, provider), r in fastest(results).items():
        groups.setdefault((case.label, form, mode), {})[provider] = r
    names = list(dict.fromkeys(r.provider for r in results if r.provider.startswith("grukit-cpu[")))
    lines = [
        "| case (N, T, I, H) | form | mode | plain ms | "
        + " | ".join(n[len("grukit-cpu[") : -1] for n in names)
        + " |",
        "|---|---|---|---:|" + "---:|" * len(names),
    ]
    for (label, form, mode), peers in groups.items():
        plain = peers.get("grukit-cpu")
        if plain is None:
            continue
        cells = [_x(peers[n].median / plain.median) if n in peers else "-" for n in names]
        lines.append(f"| {label} | {form} | {mode} | {plain.median * 1e3:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def to_csv(results: list[Result]) -> str:
    data = rows(results)
    fields = list(dict.fromkeys(k for row in data for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(data)
    return buf.getvalue()


def to_json(results: list[Result], env: dict, command: str) -> str:
    return json.dumps({"command": command, "environment": env, "results": rows(results)}, indent=2)


def markdown(results: list[Result], subject: str = "grukit-cpu") -> str:
    """One row per (case, formulation, mode): ``subject`` beside torch.nn.GRU, ONNX Runtime and
    OpenVINO, each at its fastest thread count (in brackets), medians in ms, the speed-up over the
    best peer, and training peak memory where measured."""
    groups: dict[tuple, dict[str, Result]] = {}
    for (case, form, mode, provider), r in fastest(results).items():
        groups.setdefault((case.label, form, mode), {})[provider] = r
    lines = [
        "| case (N, T, I, H) | form | mode | grukit ms | torch ms | ORT ms | OpenVINO ms "
        "| vs torch | vs best peer | peak MB grukit / torch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, form, mode), peers in groups.items():
        own = peers.get(subject)
        if own is None:
            continue
        ms = lambda r: f"{r.median * 1e3:.2f} ({r.threads})" if r else "-"  # noqa: E731
        others = [peers[p] for p in PEERS if p in peers and p != subject]
        vs_best = f"{min(p.median for p in others) / own.median:.2f}x" if others else "-"
        torch_r = peers.get("torch")
        vs_torch = f"{torch_r.median / own.median:.2f}x" if torch_r else "-"
        mem = "-"
        if own.peak_mb is not None:
            mem = f"{own.peak_mb:.0f} / " + (
                f"{torch_r.peak_mb:.0f}" if torch_r and torch_r.peak_mb is not None else "-"
            )
        lines.append(
            f"| {label} | {form} | {mode} | {ms(own)} | {ms(torch_r)} | {ms(peers.get('ort'))} | "
            f"{ms(peers.get('openvino'))} | {vs_torch} | {vs_best} | {mem} |"
        )
    return "\n".join(lines)
