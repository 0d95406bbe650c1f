"""`prottrans-import`: a Hugging Face checkpoint folder of any registered family → a TF Serving model folder."""

from __future__ import annotations

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start

quiet_start()  # before TensorFlow is imported

import argparse
import sys
from typing import Sequence

from models.export.signatures import PRECISIONS, export_saved_model, head_signatures
from models.hf_checkpoint import CheckpointError
from models.registry import FAMILIES

IMPORTABLE = {name: family for name, family in FAMILIES.items() if family.import_checkpoint is not None}


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-import", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prottrans-import", description=__doc__,
        epilog="files read per family: " + "; ".join(
            f"{name}: {', '.join(family.checkpoint_files)}" for name, family in IMPORTABLE.items()))
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--from-hf", required=True, metavar="DIR", help="the checkpoint folder")
    parser.add_argument("--family", required=True, choices=sorted(IMPORTABLE))
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="TF Serving model folder; a new numbered version is added")
    parser.add_argument("--dtype", choices=PRECISIONS, default="float32",
                        help="precision the SavedModel holds and computes in (weights of any precision are read)")
    parser.add_argument("--output-dtype", choices=("float32", "float16"), default="float32",
                        help="precision of the embeddings it returns")
    args = parser.parse_args(argv)
    family = IMPORTABLE[args.family]
    try:
        model = family.import_checkpoint(args.from_hf, log=lambda line: print(f"prottrans-import: {line}"))
    except CheckpointError as error:
        print(f"prottrans-import: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a weight whose shape is not the one config.json gives the model
        print(f"prottrans-import: error: {args.from_hf}: the weights do not fit the model its config.json describes: "
              f"{' '.join(str(error).split())[:300]}", file=sys.stderr)
        return 2
    head = head_signatures(family.objective, model)
    if head and args.dtype != "float32":
        print(f"prottrans-import: {', '.join(sorted(head.signatures))} are exported in float32 only: this "
              f"{args.dtype} SavedModel embeds")
        head = None
    path = export_saved_model(model.backbone, args.output, dtype=args.dtype, output_dtype=args.output_dtype,
                              head=head)
    served = f"; with {', '.join(sorted(head.signatures))}" if head else ""
    print(f"imported {args.family} from {args.from_hf}: SavedModel ({args.dtype}) at {path}{served}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
