"""``python -m training.engine <stage> ...``: the data engine's stages (see training/README.md).

Stages:
  train         (1) train a labeler on labelled data: the same as ``python -m training.train``
  pseudo-label  (2) run a labeler over unlabelled panoramas -> depth + mask + score + manifest.jsonl
  select        (3) train the PatchGAN quality discriminator and keep the top-K per domain
  train-next    (4) train the next labeler / the final model on labelled + selected pseudo-labels:
                ``train`` with ``--selected SEL/selected.txt`` appended to data.extra_train
"""
from __future__ import annotations

import sys


def train_next(argv: list[str]) -> int:
    import argparse

    from training import train

    parser = argparse.ArgumentParser(prog="python -m training.engine train-next")
    parser.add_argument("--config", required=True)
    parser.add_argument("--selected", required=True, action="append",
                        help="selected.txt (list format) of the select stage (repeatable)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    import json

    # JSON is YAML: the override carries the list specs verbatim (paths with any characters)
    specs = [{"type": "list", "list_file": str(path), "augment": True} for path in args.selected]
    extra = "data.extra_train=" + json.dumps(specs)
    return train.main(["--config", args.config, *args.overrides, extra])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage == "train":
        from training.train import main as run
    elif stage == "pseudo-label":
        from training.engine.pseudo_label import main as run
    elif stage == "select":
        from training.engine.discriminator import main as run
    elif stage == "train-next":
        run = train_next
    else:
        print(f"error: unknown stage '{stage}' (train, pseudo-label, select, train-next)", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
