"""The FSDD recipe search (docs/speech.md): GRUSpeechRecognizer configurations on FSDD's
official split (recordings 0-4 of each speaker and digit are the 300 test recordings).

    .venv/bin/python scripts/speech_recipe.py                 # every recipe
    .venv/bin/python scripts/speech_recipe.py B D --fsdd DIR

Each recipe trains on the 2,700 training recordings (10% of them, at random, for early
stopping) and prints its test accuracy, errors, epochs and training time on one line. FSDD is
read from --fsdd, else $GRUKIT_FSDD, else the cache.
"""

from __future__ import annotations

import argparse
import time

RECIPES = {  # name: (SpeechConfig fields, TrainConfig fields); docs/speech.md's recipe table
    "A": (dict(features="logmel", hidden_size=128, noise_snr=None), dict(epochs=30, patience=8)),
    "B": (dict(features="logmel", hidden_size=128, stack=1, noise_snr=None), dict(epochs=30, patience=8)),
    "D": (dict(features="logmel", hidden_size=128, noise_snr=10.0), dict(epochs=40, patience=12)),
    "E": (
        dict(features="mfcc", hidden_size=128, noise_snr=10.0),
        dict(epochs=40, patience=12),
    ),  # today's defaults
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "recipes", nargs="*", metavar="RECIPE", help=f"some of {', '.join(RECIPES)} (default: all)"
    )
    p.add_argument("--fsdd", default=None, metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe {unknown[0]!r}; the recipes are {', '.join(RECIPES)}")
    from grukit.apps.speech.estimator import GRUSpeechRecognizer
    from grukit.data.audio import read_many
    from grukit.data.speech import fsdd, official_split

    train, test = official_split(fsdd(args.fsdd))
    tw, _, _ = read_many([u.path for u in train], 8000)
    sw, _, _ = read_many([u.path for u in test], 8000)
    tl, sl = [u.text for u in train], [u.text for u in test]
    for name in args.recipes or list(RECIPES):
        model, training = RECIPES[name]
        rec = GRUSpeechRecognizer(train={"progress": "off", "seed": args.seed, **training}, **model)
        t0 = time.perf_counter()
        rec.fit(tw, tl)
        seconds = time.perf_counter() - t0
        r = rec.evaluate(sw, sl)
        errors = sum(p != t for p, t in zip(r["predictions"], sl))
        print(
            f"{name}: accuracy {r['accuracy']:.4f} ({errors} errors in {len(sl)}), "
            f"{rec.result_.epochs_run} epochs (best {rec.result_.best_epoch}), {seconds:.0f} s, "
            f"{rec.num_parameters:,} parameters  {model} {training}",
            flush=True,
        )


if __name__ == "__main__":
    main()
