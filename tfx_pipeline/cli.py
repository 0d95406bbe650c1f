"""`prottrans-pipeline`: run the TFX pipeline locally, or compile (and submit) it for Vertex AI.

With no options it runs on the embedded defaults: the bundled UniProt sample, a `small` ProtBert trained briefly
on CPU, the bundled probe sets, LocalDagRunner with SQLite ML Metadata, all under ./prottrans-pipeline.
"""

from __future__ import annotations

import os

from beam_jobs.console import VERBOSE_FLAG, VERBOSE_HELP, guarded, quiet_start
from beam_jobs.output_lock import OutputLock, OutputLocked

quiet_start()  # before TensorFlow is imported

import argparse
import sys
import time
from typing import Sequence

from tfx_pipeline.config import load_config

NOT_BLESSED_STATUS = 3  # with --fail-if-not-blessed; 2 is a usage or config error


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prottrans-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline (local) or compile it for Vertex AI (vertex)")
    run.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    run.add_argument("--config", default=None, metavar="FILE", help="YAML or JSON with config keys")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override one config key (repeatable), e.g. --set training.steps=1000 --set vertex.project=p")
    run.add_argument("--runner", choices=("local", "vertex"), default="local")
    run.add_argument("--submit", action="store_true", help="with --runner vertex: submit the compiled spec")
    run.add_argument("--fail-if-not-blessed", action="store_true",
                     help=f"exit with status {NOT_BLESSED_STATUS} when the gate refuses the model (for CI); by default a "
                     "refused run exits 0, its model kept in the candidates folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded("prottrans-pipeline", lambda: _main(argv), argv)


def _main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except (ValueError, OSError) as error:
        print(f"prottrans-pipeline: error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        if args.runner == "vertex":
            from tfx_pipeline.runners import vertex

            spec = vertex.compile_spec(config)
            print(f"pipeline spec: {os.path.abspath(spec)}")
            if args.submit:
                print(f"submitted: {vertex.submit(config, spec)}")
            return 0
        config.check_local_paths()
        from tfx_pipeline.runners import local
        from tfx_pipeline.summary import describe_last_run

        # One local run per output folder (its SQLite ML Metadata takes concurrent writers poorly, and two runs
        # would push the same model twice): a second is refused, naming the first. Held through the summary, so
        # the summary reads this run's artifacts.
        with OutputLock(config.root("local"), "prottrans-pipeline run"):
            local.run(config)
            outcome = describe_last_run(config)
    except ValueError as error:
        print(f"prottrans-pipeline: error: {error}", file=sys.stderr)
        return 2
    except OutputLocked as error:
        print(f"prottrans-pipeline: error: {error}", file=sys.stderr)
        return 2
    print(outcome.text)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.fail_if_not_blessed and not outcome.blessed:
        print("prottrans-pipeline: the model was not blessed (--fail-if-not-blessed)", file=sys.stderr)
        return NOT_BLESSED_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
