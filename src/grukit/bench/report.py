"""Benchmark output: the terminal table, CSV and JSON, with machine, versions and threads."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from importlib import metadata

import torch

from grukit.bench.runner import Result


def environment(peak_gflops: float | None) -> dict:
    """Machine, versions and thread counts, recorded with every result."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for pkg in ("grukit", "torch", "numpy", "numba", "onnxruntime", "onnx"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "ort_threads": torch.get_num_threads(),
        "ort_spinning": False,
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "matmul_peak_gflops": peak_gflops,
    }


def _ratios(results: list[Result]) -> dict[int, dict[str, float]]:
    """Per result: speed-up of this provider over torch and over ONNX Runtime on the same row."""
    groups: dict[tuple, dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.case, r.formulation, r.mode), {})[r.provider] = r
    out = {}
    for r in results:
        if r.skipped:
            continue
        peers = groups[(r.case, r.formulation, r.mode)]
        ratios = {}
        for peer in ("torch", "ort-lbr1", "ort-lbr0"):
            p = peers.get(peer)
            if p is not None and not p.skipped and p is not r:
                ratios[peer] = p.median / r.median
        plain = peers.get("grukit-cpu")
        if r.provider.startswith("grukit-cpu[") and plain is not None and not plain.skipped:
            ratios["cost_vs_plain"] = r.median / plain.median  # > 1: slower than the plain GRU
        out[id(r)] = ratios
    return out


def rows(results: list[Result]) -> list[dict]:
    ratios = _ratios(results)
    table = []
    for r in results:
        row = {"case": r.case.label, **r.case.as_dict(), "formulation": r.formulation,
               "mode": r.mode, "provider": r.provider}
        if r.skipped:
            row["skipped"] = r.skipped
        else:
            row.update(median_ms=r.median * 1e3, spread=r.spread, gflops=r.gflops,
                       rounds=len(r.times), first_call_s=r.first_call_s, peak_mb=r.peak_mb)
            for peer, ratio in ratios[id(r)].items():
                row[peer if peer == "cost_vs_plain" else f"speedup_vs_{peer}"] = ratio
        table.append(row)
    return table


def table(results: list[Result], peak_gflops: float | None) -> str:
    lines = []
    variants = any(r.provider.startswith("grukit-cpu[") for r in results)
    width = 30 if variants else 16
    head = (f"{'case':<24} {'form':<6} {'mode':<9} {'provider':<{width}} {'median ms':>10} "
            f"{'spread':>7} {'GFLOP/s':>8} {'%peak':>6} {'vs torch':>9} {'vs ORT':>7} {'peak MB':>8}"
            + (f" {'vs plain':>9}" if variants else ""))
    lines += [head, "-" * len(head)]
    for row in rows(results):
        label = f"{row['case']:<24} {row['formulation']:<6} {row['mode']:<9} {row['provider']:<{width}}"
        if "skipped" in row:
            continue
        ort = row.get("speedup_vs_ort-lbr1", row.get("speedup_vs_ort-lbr0"))
        pct = 100 * row["gflops"] / peak_gflops if peak_gflops else float("nan")
        mem = f"{row['peak_mb']:8.1f}" if row.get("peak_mb") is not None else f"{'':>8}"
        lines.append(
            f"{label} {row['median_ms']:10.2f} {100 * row['spread']:6.0f}% {row['gflops']:8.1f} "
            f"{pct:5.0f}% {_x(row.get('speedup_vs_torch')):>9} {_x(ort):>7} {mem}"
            + (f" {_x(row.get('cost_vs_plain')):>9}" if variants else "")
        )
    skipped = sorted({f"{r.provider}: {r.skipped}" for r in results if r.skipped})
    if skipped:
        lines.append("")
        lines.append("not run: " + "; ".join(skipped))
    return "\n".join(lines)


def variants_markdown(results: list[Result]) -> str:
    """One row per (case, formulation, mode): the plain grukit-cpu time and each variant's time
    as a multiple of it (``grukit bench --variants``)."""
    groups: dict[tuple, dict[str, Result]] = {}
    for r in results:
        if r.skipped is None:
            groups.setdefault((r.case.label, r.formulation, r.mode), {})[r.provider] = r
    names = list(dict.fromkeys(r.provider for r in results if r.provider.startswith("grukit-cpu[")))
    lines = [
        "| case (N, T, I, H) | form | mode | plain ms | "
        + " | ".join(n[len("grukit-cpu[") : -1] for n in names) + " |",
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
    """One row per (case, formulation, mode): ``subject`` beside torch.nn.GRU and ONNX Runtime,
    medians in ms, speed-ups, and training peak memory where measured."""
    groups: dict[tuple, dict[str, Result]] = {}
    for r in results:
        if r.skipped is None:
            groups.setdefault((r.case.label, r.formulation, r.mode), {})[r.provider] = r
    lines = [
        "| case (N, T, I, H) | form | mode | grukit ms | torch ms | ORT ms | vs torch | vs ORT "
        "| peak MB grukit / torch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, form, mode), peers in groups.items():
        own = peers.get(subject)
        if own is None:
            continue
        torch_r = peers.get("torch")
        ort = peers.get("ort-lbr1" if form == "after" else "ort-lbr0")
        ms = lambda r: f"{r.median * 1e3:.1f}" if r else "-"  # noqa: E731
        ratio = lambda r: f"{r.median / own.median:.2f}x" if r else "-"  # noqa: E731
        mem = "-"
        if own.peak_mb is not None:
            mem = f"{own.peak_mb:.0f} / " + (f"{torch_r.peak_mb:.0f}" if torch_r and torch_r.peak_mb is not None else "-")
        lines.append(f"| {label} | {form} | {mode} | {ms(own)} | {ms(torch_r)} | {ms(ort)} | "
                     f"{ratio(torch_r)} | {ratio(ort)} | {mem} |")
    return "\n".join(lines)
