"""The text demo's recipe search (docs/text.md): short runs of GRULanguageModel on char-PTB.

    .venv/bin/python scripts/text_recipe.py              # every recipe, 150 s each (~35 min)
    .venv/bin/python scripts/text_recipe.py C E --seconds 60
    .venv/bin/python scripts/text_recipe.py C I J K L --whole   # the schedules (docs/text.md)

Each recipe trains on the full training text for ``--seconds`` (the budget ends it mid-epoch),
validated and scored on the first 100,000 characters of the validation text, or with
``--whole`` validated on the whole validation text and scored on the whole validation and test
texts (as the demo is); prints one line per recipe. Run it with nothing else computing: the
budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import time

RECIPES = {  # name: (LMConfig fields, TrainConfig fields)
    "A": (dict(hidden_size=256), dict(batch_size=64, lr=2e-3)),
    "B": (dict(hidden_size=256), dict(batch_size=32, lr=3e-3)),
    "C": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=3e-3)),
    "D": (dict(hidden_size=384), dict(batch_size=64, lr=2e-3)),
    "E": (dict(hidden_size=256, layer_norm=True), dict(batch_size=64, lr=3e-3)),
    "F": (dict(hidden_size=256, bptt=64), dict(batch_size=32, lr=3e-3)),
    "G": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=5e-3)),
    "H": (dict(hidden_size=256, bptt=64, layer_norm=True), dict(batch_size=64, lr=3e-3)),
    # C with the "budget" schedule (linear decay to 0 over the seconds) and higher peaks
    "I": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=3e-3, schedule="budget")),
    "J": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=6e-3)),
    "K": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=6e-3, schedule="budget")),
    "L": (dict(hidden_size=256, bptt=64), dict(batch_size=64, lr=1e-2, schedule="budget")),  # the demo
}
SCORED = 100_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "recipes", nargs="*", metavar="RECIPE", help=f"some of {', '.join(RECIPES)} (default: all)"
    )
    p.add_argument("--seconds", type=float, default=150.0)
    p.add_argument("--whole", action="store_true", help="validate and score on the whole texts")
    args = p.parse_args()
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe {unknown[0]!r}; the recipes are {', '.join(RECIPES)}")
    args.recipes = args.recipes or list(RECIPES)
    from grukit.apps.text import GRULanguageModel
    from grukit.data.text import char_ptb

    ptb = char_ptb()
    valid = ptb["valid"] if args.whole else ptb["valid"][:SCORED]
    what = "whole valid" if args.whole else f"valid (first {SCORED:,})"
    for name in args.recipes:
        model, train = RECIPES[name]
        lm = GRULanguageModel(train={"max_time": args.seconds, "progress": "off", **train}, **model)
        t0 = time.perf_counter()
        lm.fit(ptb["train"], valid=valid, also=[ptb["valid"], ptb["test"]])
        fit = time.perf_counter() - t0
        bpc = lm.evaluate(valid)["bpc"]
        test = f" test {lm.evaluate(ptb['test'])['bpc']:.4f}" if args.whole else ""
        print(
            f"{name} {model} {train} {what} bpc {bpc:.4f}{test} epochs {lm.result_.epochs_run} fit {fit:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
