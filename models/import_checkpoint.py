"""`prottrans-import` (DESIGN §7): a Hugging Face ProtBert/ProtAlbert/ProtXLNet folder → a TF Serving model folder."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
from typing import Sequence

from models.checkpoint_import import CheckpointError, load_masked_lm, load_xlnet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prottrans-import", description=__doc__)
    parser.add_argument("--from-hf", required=True, metavar="DIR",
                        help="folder with config.json, vocab.txt (ProtXLNet: spiece.model) and model.safetensors or "
                        "pytorch_model.bin")
    parser.add_argument("--family", required=True, choices=("protbert", "protalbert", "protxlnet"))
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="TF Serving model folder; a new numbered version is added")
    args = parser.parse_args(argv)
    try:
        backbone = load_xlnet(args.from_hf) if args.family == "protxlnet" else \
            load_masked_lm(args.from_hf, args.family).backbone
    except CheckpointError as error:
        print(f"prottrans-import: error: {error}", file=sys.stderr)
        return 2
    from serving.signatures import export_saved_model

    path = export_saved_model(backbone, args.output)
    print(f"imported {args.family} from {args.from_hf}: SavedModel at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
