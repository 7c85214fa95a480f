"""Report the cpu backend's first-call cost: compiling the Numba kernels (cold cache) versus
loading them from Numba's on-disk cache (warm), each in a fresh process; for training (a
forward and backward pass) and, in a cache of its own, for inference alone (a no-grad call,
which runs the streaming kernel and compiles no backward pass).

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
def call():
    if TRAIN:
        gru(x)[0].sum().backward()
    else:
        with torch.no_grad():
            gru(x)
call()
t2 = time.perf_counter()
call()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "second_call_s": t3 - t2,
                  "backend": gru.backend_used}))
"""


def run(cache_dir: str, train: bool) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    child = f"TRAIN = {train}\n" + CHILD
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    for train, what in ((True, "forward+backward"), (False, "no-grad call")):
        with tempfile.TemporaryDirectory() as cache:
            cold = run(cache, train)
            warm = run(cache, train)
        for name, r in (("cold cache (compiles)", cold), ("warm cache (loads)", warm)):
            print(
                f"{name:<22} import {r['import_s']:.2f} s, first {what} "
                f"{r['first_call_s']:.2f} s, next {r['second_call_s'] * 1e3:.1f} ms "
                f"[backend {r['backend']}]"
            )


if __name__ == "__main__":
    main()
