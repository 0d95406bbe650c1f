"""Residues/s of `prottrans-embed --beam` (1 and 2 local worker processes) against the single-process command, on
the same FASTA and the same SavedModel, measured in one run (each command in its own process, wall time from start
to exit, so start-up costs count as a user sees them).

    .venv/bin/python bench/beam_embed.py [--preset small] [--input beam_jobs/sample_data/uniprot_sample.fasta.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBED = os.path.join(os.path.dirname(sys.executable), "prottrans-embed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--input", default=os.path.join(REPO, "beam_jobs", "sample_data", "uniprot_sample.fasta.gz"))
    args = parser.parse_args(argv)

    import keras

    from bench.flops import matmul_peak
    from models.export.signatures import export_saved_model
    from models.registry import build_backbone

    print(f"dense float32 matmul peak: {matmul_peak('float32', repeats=5) / 1e9:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as scratch:
        keras.utils.set_random_seed(0)
        model = export_saved_model(build_backbone("protbert", args.preset), os.path.join(scratch, "model"), 1)
        runs = {
            "single process": [args.input, os.path.join(scratch, "single.h5")],
            "Beam, 1 worker": ["--beam", args.input, os.path.join(scratch, "beam1"), "--direct_num_workers=1"],
            "Beam, 2 workers": ["--beam", args.input, os.path.join(scratch, "beam2"), "--direct_num_workers=2",
                                "--direct_running_mode=multi_processing"],
        }
        seconds = {}
        for name, flags in runs.items():
            start = time.perf_counter()
            subprocess.run([EMBED, "--saved-model", model, "--per-protein", *flags], check=True,
                           capture_output=True, text=True)
            seconds[name] = time.perf_counter() - start
        with open(os.path.join(scratch, "beam2", "manifest.json")) as handle:
            embedded = json.load(handle)["counts"]["embedded"]
    from beam_jobs.fasta import read_fasta

    residues = sum(len(record.sequence) for record in read_fasta(args.input))
    print(f"{embedded:,} proteins, {residues:,} residues, ProtBert {args.preset} (random weights)")
    print(f"{'':16} {'seconds':>8} {'residues/s':>11} {'vs single':>10}")
    for name, value in seconds.items():
        print(f"{name:16} {value:8.1f} {residues / value:11,.0f} {seconds['single process'] / value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
