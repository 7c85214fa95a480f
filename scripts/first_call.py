"""Report the cpu backend's first-call cost: compiling the Numba kernels (cold cache) versus
loading them from Numba's on-disk cache (warm), each in a fresh process.

    python scripts/first_call.py

Cold runs point NUMBA_CACHE_DIR at an empty temporary folder (and keep Numba from using the
package's own __pycache__ by copying nothing there); warm runs reuse that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import torch, grukit
t1 = time.perf_counter()
gru = grukit.GRU(8, 16)
x = torch.randn(5, 2, 8)
gru(x)[0].sum().backward()
t2 = time.perf_counter()
gru(x)[0].sum().backward()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "second_call_s": t3 - t2,
                  "backend": gru.backend_used}))
"""


def run(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = run(cache)
        warm = run(cache)
    for name, r in (("cold cache (compiles)", cold), ("warm cache (loads)", warm)):
        print(
            f"{name:<22} import {r['import_s']:.2f} s, first forward+backward "
            f"{r['first_call_s']:.2f} s, next {r['second_call_s'] * 1e3:.1f} ms "
            f"[backend {r['backend']}]"
        )


if __name__ == "__main__":
    main()
