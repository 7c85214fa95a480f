"""Smoke test of a built grukit distribution, installed as a stranger would install it.

``make wheel-check`` builds the sdist and the wheel (the wheel from the sdist), installs the wheel
with only its base dependencies into a fresh virtual environment, and runs this script with that
environment's Python from a folder outside the source tree:

    python wheel_smoke.py --wheel dist/grukit-X-py3-none-any.whl --sdist dist/grukit-X.tar.gz \\
        --source src/grukit

It checks, raising on the first failure:

1. the wheel and the sdist hold every file of the package's source tree that is tracked by git
   (every module, ``py.typed``), so a file left out of the package is caught here and not by a user;
2. ``import grukit`` loads the installed copy (not a checkout), and its version is the installed
   distribution's version;
3. a small ``grukit.GRU`` (both formulations, ``reference`` and the default backend) agrees with
   ``torch.nn.GRU`` / the reference;
4. ``grukit --version`` prints that version, and ``grukit ... --help`` works for every command and
   subcommand, found by walking the argparse tree (without the optional extras installed: their
   imports must be lazy).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def _tracked(source: Path) -> list[str]:
    """The package's files git tracks, relative to the package folder's parent (``grukit/...``),
    plus ``py.typed``; without git, every file but caches."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "."], cwd=source, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()]
    names = {f"{source.name}/{f}" for f in out if "__pycache__" not in f and not f.endswith(".pyc")}
    return sorted(names | {f"{source.name}/py.typed"})


def check_contents(wheel: Path, sdist: Path, source: Path) -> None:
    expected = _tracked(source)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in expected if f not in in_wheel]
    if missing:
        raise AssertionError(f"{wheel.name} lacks {len(missing)} package files: {missing[:10]}")
    with tarfile.open(sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        in_sdist = {n.removeprefix(f"{root}/src/") for n in tar.getnames()}
    missing = [f for f in expected if f not in in_sdist]
    if missing:
        raise AssertionError(f"{sdist.name} lacks {len(missing)} package files: {missing[:10]}")
    print(f"contents: {len(expected)} package files in the wheel and the sdist")


def check_api() -> None:
    import torch

    import grukit

    where = Path(grukit.__file__).resolve()
    if not where.is_relative_to(Path(sys.prefix).resolve()):
        raise AssertionError(f"imported grukit from {where}, not from the environment {sys.prefix}")
    installed = importlib.metadata.version("grukit")
    if grukit.__version__ != installed:
        raise AssertionError(f"grukit.__version__ {grukit.__version__} != installed {installed}")
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4)  # (T, N, I)
    theirs = torch.nn.GRU(4, 6, num_layers=2, bidirectional=True)
    for backend in ("reference", "auto"):
        ours = grukit.GRU(4, 6, num_layers=2, bidirectional=True, reset_after=True, backend=backend)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        (y, h), (y_t, h_t) = ours(x), theirs(x)  # (T, N, 2H), (2L, N, H)
        torch.testing.assert_close(y, y_t, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(h, h_t, rtol=1e-5, atol=1e-5)
    spec = grukit.GRU(4, 6, reset_after=False)
    ref = grukit.GRU(4, 6, reset_after=False, backend="reference")
    ref.load_state_dict(spec.state_dict(), strict=True)
    torch.testing.assert_close(spec(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)  # (T, N, H)
    print(f"api: grukit {installed} from {where.parent}; GRU agrees with torch.nn.GRU")


def _commands() -> list[list[str]]:
    """Every command path of the CLI, from the argparse tree (``[]`` is ``grukit`` itself)."""
    from grukit.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])

    return list(walk(build_parser(), []))


def check_cli() -> None:
    from grukit import __version__
    from grukit.cli.main import main

    exe = Path(sys.executable).with_name("grukit")  # the installed console script
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    if out.strip() != f"grukit {__version__}":
        raise AssertionError(f"grukit --version printed {out.strip()!r}, expected 'grukit {__version__}'")
    subprocess.run([exe, "--help"], capture_output=True, check=True)
    commands = _commands()
    for path in commands[1:]:  # in this process: the console script ran above
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                code = main([*path, "--help"])
            except SystemExit as exc:
                code = exc.code
        if code != 0 or "usage:" not in buf.getvalue():
            raise AssertionError(f"grukit {' '.join(path)} --help exited {code}:\n{buf.getvalue()}")
    print(f"cli: grukit --version, and --help of all {len(commands)} commands and subcommands")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True, help="the package's source folder")
    args = parser.parse_args()
    if Path.cwd().resolve().is_relative_to(args.source.resolve().parent.parent):
        sys.exit(f"run this from outside the source tree, not from {Path.cwd()}")
    os.environ.setdefault("GRUKIT_DEBUG", "1")  # a failing command prints its traceback
    check_contents(args.wheel, args.sdist, args.source)
    check_api()
    check_cli()


if __name__ == "__main__":
    main()
