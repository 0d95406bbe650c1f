"""ProtT5-XL at the published shape: our SavedModel against transformers' T5EncoderModel, residues/s and peak
resident memory on one protein, the same random weights in both.

    # once: an xl-shape encoder checkpoint with random weights in transformers' format, and our SavedModels of it
    python bench/prott5_xl.py prepare --dir /tmp/prott5_xl --reference-python PYTHON
    # each measurement in its own process (peak memory is per process), frameworks alternating
    python bench/prott5_xl.py compare --dir /tmp/prott5_xl --reference-python PYTHON \\
        --residues 256 1000 5000 --dtypes float32 bfloat16

PYTHON has torch and transformers (the project's `reference` dependency group: `uv sync --group reference`, or any
environment with them); the rest runs in the project's environment. `measure` (what `compare` runs) embeds one
short protein to warm up, then times one protein of `--residues` residues, and prints a JSON line: seconds,
residues/s, and the process's peak resident memory (``ru_maxrss``) after loading and after the protein.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RESIDUES = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKAL"
# The published shape (Rostlab prot_t5_xl_uniref50's config.json), encoder only, over ProtT5's 128-token vocabulary
XL_CONFIG = dict(vocab_size=128, d_model=1024, d_kv=128, d_ff=16384, num_layers=24, num_heads=32,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                 layer_norm_epsilon=1e-6, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1)
SPIECE = os.path.join(REPO, "tests", "fixtures", "hf", "prott5", "spiece.model")  # ProtT5's pieces and ids


def protein(residues: int) -> str:
    return (RESIDUES * (residues // len(RESIDUES) + 1))[:residues]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_checkpoint(folder: str) -> None:
    """(In the reference environment.) A T5EncoderModel of the xl shape with random weights, and ProtT5's
    sentencepiece model."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(**XL_CONFIG))
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(SPIECE, os.path.join(folder, "spiece.model"))


def measure_transformers(folder: str, dtype: str, residues: int) -> dict:
    import torch
    from transformers import T5EncoderModel

    torch.set_num_threads(os.cpu_count() or 1)
    import sentencepiece

    model = T5EncoderModel.from_pretrained(folder, torch_dtype=getattr(torch, dtype)).eval()
    processor = sentencepiece.SentencePieceProcessor(model_file=os.path.join(folder, "spiece.model"))

    def ids(sequence: str):
        return torch.tensor([[processor.piece_to_id(f"\u2581{r}") for r in sequence] + [1]])

    with torch.inference_mode():
        model(input_ids=ids(protein(16)))
        loaded = peak_rss_gib()
        start = time.perf_counter()
        hidden = model(input_ids=ids(protein(residues))).last_hidden_state
        seconds = time.perf_counter() - start
    assert hidden.shape == (1, residues + 1, 1024) and bool(torch.isfinite(hidden.float()).all())
    return {"seconds": seconds, "loaded_gib": loaded, "peak_gib": peak_rss_gib()}


def measure_ours(folder: str, residues: int) -> dict:
    from beam_jobs.console import quiet_start

    quiet_start([])
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(folder).signatures["serving_default"]
    signature(sequences=tf.constant([protein(16)]))
    loaded = peak_rss_gib()
    start = time.perf_counter()
    outputs = signature(sequences=tf.constant([protein(residues)]))
    embeddings = outputs["residue_embeddings"].numpy()
    seconds = time.perf_counter() - start
    assert embeddings.shape == (1, residues, 1024) and np.isfinite(embeddings).all()
    return {"seconds": seconds, "loaded_gib": loaded, "peak_gib": peak_rss_gib()}


def prepare(args) -> None:
    hf = os.path.join(args.dir, "hf")
    if not os.path.exists(os.path.join(hf, "config.json")):
        subprocess.run([args.reference_python, __file__, "write-checkpoint", "--dir", hf], check=True)
    for dtype in ("float32", "bfloat16"):
        output = os.path.join(args.dir, f"ours_{dtype}")
        if not os.path.isdir(os.path.join(output, "1")):
            subprocess.run([sys.executable, "-m", "models.cli.import_checkpoint", "--from-hf", hf, "--family",
                            "prott5", "--output", output, "--dtype", dtype], check=True, cwd=REPO)


def compare(args) -> None:
    from beam_jobs.console import quiet_start

    quiet_start([])
    from bench.flops import matmul_peak

    peaks = {dtype: matmul_peak(dtype, repeats=5) / 1e9 for dtype in args.dtypes}
    print("dense matmul peak (GFLOP/s): " + ", ".join(f"{d} {p:.0f}" for d, p in peaks.items()), flush=True)
    rows = []
    for residues in args.residues:
        for dtype in args.dtypes:
            result = {}
            for framework in ("ours", "transformers"):
                python = sys.executable if framework == "ours" else args.reference_python
                line = subprocess.run([python, __file__, "measure", "--framework", framework, "--dtype", dtype,
                                       "--residues", str(residues), "--dir", args.dir], check=True, cwd=REPO,
                                      capture_output=True, text=True).stdout.strip().splitlines()[-1]
                result[framework] = json.loads(line)
                print(f"{residues} {dtype} {framework}: {line}", flush=True)
            ours, theirs = result["ours"], result["transformers"]
            rows.append(f"| {residues:,} | {dtype} | {residues / ours['seconds']:,.0f} | "
                        f"{residues / theirs['seconds']:,.0f} | {theirs['seconds'] / ours['seconds']:.2f}× | "
                        f"{ours['peak_gib']:.2f} | {theirs['peak_gib']:.2f} | "
                        f"{ours['peak_gib'] / theirs['peak_gib']:.2f}× |")
    print("| residues | precision | ours residues/s | transformers residues/s | speed ratio | ours peak GiB | "
          "transformers peak GiB | memory ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prepare", "compare", "measure", "write-checkpoint"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--framework", choices=("ours", "transformers"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--residues", type=int, nargs="+", default=[256, 1000, 5000])
    args = parser.parse_args(argv)
    if args.command == "write-checkpoint":
        write_checkpoint(args.dir)
    elif args.command == "prepare":
        prepare(args)
    elif args.command == "compare":
        compare(args)
    else:
        residues = args.residues[0]
        if args.framework == "ours":
            result = measure_ours(os.path.join(args.dir, f"ours_{args.dtype}", "1"), residues)
        else:
            result = measure_transformers(os.path.join(args.dir, "hf"), args.dtype, residues)
        print(json.dumps({"framework": args.framework, "dtype": args.dtype, "residues": residues, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
