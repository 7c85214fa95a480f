"""Keeping Numba's on-disk cache honest across files.

Numba keys a cached function on its own source file only: a function that inlines or calls
compiled code from another file keeps its stale machine code after that file changes (Numba's
documented limitation). The kernels are spread over several files (``_cpu_kernels`` calls
``_sync.barrier``; ``_cpu_omp`` compiles the kernels into its callback, reading arguments in the
order ``_cpu_args`` defines; ``_stream_kernel`` inlines the activations), so a changed kernel
signature once ran against an old callback and produced garbage gradients.

:func:`refresh` is called by each such module before it defines a cached function: it hashes
the module's own source and its dependencies' and, when the hash differs from the one recorded
beside the cache, deletes that module's cache files (Numba then compiles afresh and caches again).
Only the default cache location, ``__pycache__`` beside the source, is handled; every failure to
read or write there is ignored (the cache is an optimisation).
"""

from __future__ import annotations

import glob
import hashlib
import os

__all__ = ["refresh"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def refresh(module_file: str, *dependencies: str) -> None:
    """Drop the Numba cache of ``module_file`` if it or any of ``dependencies`` (module names
    relative to this package, e.g. ``"_sync"`` or ``"../_layer_options"``) changed since the
    cache was written."""
    stem = os.path.splitext(os.path.basename(module_file))[0]
    paths = [os.path.abspath(module_file)]
    paths += [os.path.normpath(os.path.join(_HERE, d + ".py")) for d in dependencies]
    digest = hashlib.sha256()
    try:
        for path in paths:
            with open(path, "rb") as f:
                digest.update(f.read())
    except OSError:
        return
    folder = os.path.join(os.path.dirname(os.path.abspath(module_file)), "__pycache__")
    stamp = os.path.join(folder, f"{stem}.grukit-deps")
    try:
        with open(stamp) as f:
            if f.read() == digest.hexdigest():
                return
    except OSError:
        pass
    for path in glob.glob(os.path.join(folder, f"{stem}.*.nb[ic]")):
        try:
            os.remove(path)
        except OSError:
            pass
    try:
        os.makedirs(folder, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(digest.hexdigest())
    except OSError:
        pass
