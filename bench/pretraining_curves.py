"""The validation loss of pretraining runs against tokens, with the no-context floor drawn: from their console logs.

    .venv/bin/python bench/pretraining_curves.py --output bench/pretraining_valid_loss.png \
        --run "label=LOG[,LOG…]:TOKENS_PER_STEP" … [--gain]

With ``--gain`` it draws the validation context gain (floor − loss, with its 95% interval) instead, so runs of
different objectives, whose floors differ, share one axis.

Each `--run` names a label, the console logs of one run in order (a resumed run logs to several files) and the
tokens one optimizer step reads (global batch × sequence length). The floor is read from the logs' ``no-context
floor`` line. Prints the valid points as a table too.
"""

from __future__ import annotations

import argparse
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VALID = re.compile(r"^valid\s+(\d+)\s+loss ([\d.]+)\s+gain ([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]")
FLOOR = re.compile(r"no-context floor of \w+: ([\d.]+) nats")


def read_run(logs: list[str]) -> tuple[float | None, dict[int, tuple[float, float, float, float]]]:
    floor, points = None, {}
    for path in logs:
        with open(path) as handle:
            for line in handle:
                if (match := FLOOR.search(line)) and floor is None:
                    floor = float(match.group(1))
                if match := VALID.match(line):
                    step = int(match.group(1))
                    points[step] = tuple(float(match.group(i)) for i in range(2, 6))
    return floor, points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=LOG[,LOG]:TOKENS_PER_STEP")
    parser.add_argument("--output", required=True)
    parser.add_argument("--gain", action="store_true", help="draw the context gain instead of the loss")
    args = parser.parse_args(argv)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    floors = set()
    for spec in args.run:
        label, _, rest = spec.partition("=")
        logs, _, per_step = rest.rpartition(":")
        floor, points = read_run(logs.split(","))
        steps = sorted(points)
        tokens = [step * int(per_step) / 1e6 for step in steps]
        if args.gain:
            axis.plot(tokens, [points[s][1] for s in steps], marker="o", label=label)
            axis.fill_between(tokens, [points[s][2] for s in steps], [points[s][3] for s in steps], alpha=0.2)
        else:
            axis.plot(tokens, [points[s][0] for s in steps], marker="o", label=label)
        if floor is not None:
            floors.add(floor)
        print(f"{label} (floor {floor}):")
        for step, million in zip(steps, tokens):
            loss, gain, low, high = points[step]
            print(f"  step {step:>6}  {million:7.1f}M tokens  valid loss {loss:.4f}  gain {gain:+.4f} "
                  f"[{low:+.4f}, {high:+.4f}]")
    for floor in sorted(floors) if not args.gain else [0.0]:
        axis.axhline(floor, color="grey", linestyle="--", label=f"no-context floor {floor:.4f}")
        axis.axhline(floor - 0.10 if not args.gain else 0.10, color="red", linestyle=":",
                     label="target: 0.10 nats past the floor")
    axis.set_xlabel("tokens read (millions)")
    axis.set_ylabel("validation context gain (nats)" if args.gain else "validation loss (nats)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"figure: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
