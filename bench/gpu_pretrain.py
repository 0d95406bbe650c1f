"""Pretraining on one GPU for a fixed wall budget, then the numbers that say what it bought.

    .venv/bin/python bench/gpu_pretrain.py [--budget-s 420] [--family protbert] [--preset base]
        [--global-batch 64] [--sequence-length 512] [--data DIR] [--probe-data DIR] [--output DIR]
        [--init-from DIR [--continue-budget-s 120]] [--finetune [--finetune-epochs 2]]
    .venv/bin/python bench/gpu_pretrain.py --smoke --init-from tests/fixtures/hf/protbert --finetune
                                                       # CPU: tiny preset, 20 steps, bundled data (CI runs it)

The run is the same Trainer as `prottrans-train` with bfloat16 mixed precision and XLA. A short calibration run
measures tokens/s; the step count is then set so that the real run (warm-up and linear decay over all of it)
fills the budget. It prints tokens/s, model FLOP utilisation (6 × non-embedding parameters + 12 × layers × hidden
× length FLOPs per token) against the accelerator's bf16 dense peak (a table of known GPUs; otherwise a bf16
matmul measured in the same run), the validation context gain with its 95% interval, and the probes against
one-hot with paired intervals. Data: `--data` (a `prottrans-preprocess` folder), else Swiss-Prot 2014 100k from
``../shared/data`` when present, else the bundled UniProt sample; probes: the shared sets when present, else the
bundled ones.

With `--init-from` (a transformers folder of `--family`, or a `prottrans-train` model folder), a second run
continues pretraining from that checkpoint for `--continue-budget-s`: its tokens/s and MFU at the checkpoint's own
size, and its valid context gain before the first step and at the end. With `--finetune`, the last model trained
(the continued one, else the pretrained one) is then fine-tuned with LoRA on the probe tasks
(`prottrans-finetune`'s code) and reported against its own frozen probes, paired.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beam_jobs.console import quiet_start  # noqa: E402

quiet_start()

import tensorflow as tf  # noqa: E402

from bench.flops import flops_per_token, matmul_peak  # noqa: E402
from models.export.embedders import BackboneEmbedder  # noqa: E402
from models.probes import probe  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
# Dense bf16 peaks (FLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAKS = {"H200": 989e12, "H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H100": 756e12,
              "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="CPU check: tiny preset, 20 steps, bundled data, one probe seed")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall seconds of training (≤ 480)")
    parser.add_argument("--family", default="protbert")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--sequence-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--data", default=None, help="a prottrans-preprocess output folder")
    parser.add_argument("--probe-data", default=None, help="folder with ss/ and localization/ probe sets")
    parser.add_argument("--probe-limit", type=int, default=0, help="rows per probe set (0: all)")
    parser.add_argument("--output", default=None, help="where the model dir, probes and results.json go")
    parser.add_argument("--init-from", default=None, metavar="DIR",
                        help="then continue pretraining from this checkpoint (transformers folder of --family, or a "
                        "prottrans-train model folder)")
    parser.add_argument("--continue-budget-s", type=float, default=120.0, help="wall seconds of continued pretraining")
    parser.add_argument("--finetune", action="store_true",
                        help="then fine-tune the last trained model with LoRA on the probe tasks, against its frozen probes")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--probe-seeds", type=int, default=5, help="probes (and frozen probes) averaged over N seeds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.global_batch, args.sequence_length = "tiny", 8, 64
        args.probe_limit = args.probe_limit or 40
        args.probe_seeds = 1
    if args.budget_s > 480 or args.continue_budget_s > 480:
        parser.error("--budget-s and --continue-budget-s are at most 480 (8 minutes)")
    return args


def accelerator_peak() -> tuple[str, float, str]:
    """(device name, bf16 dense FLOP/s, where the figure comes from)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        for key, peak in BF16_PEAKS.items():
            if key in name:
                return name, peak, "data sheet"
    else:
        name = "CPU"
    return name, matmul_peak("bfloat16", size=4096 if gpus else 1024, repeats=20), "bf16 matmul measured now"


def prepare_data(args, workdir: str) -> str:
    if args.data:
        return args.data
    from beam_jobs import fasta_to_tfrecords

    swissprot = os.path.join(SHARED, "swissprot_2014_100k.fasta.gz")
    source = swissprot if os.path.exists(swissprot) and not args.smoke else \
        os.path.join(REPO, "beam_jobs", "sample_data", "uniprot_sample.fasta.gz")
    out = os.path.join(workdir, "data")
    if not os.path.exists(os.path.join(out, "manifest.json")):
        fasta_to_tfrecords.run(["--input", source, "--output-dir", out, "--num-shards", "8"])
    return out


def train(args, data: str, model_dir: str, steps: int, init_from: str | None = None):
    from models.training.settings import TrainingSettings
    from models.training.trainer import TrainJob, build_trainer

    settings = TrainingSettings(
        family=args.family, preset=args.preset, init_from=init_from, steps=steps, global_batch=args.global_batch,
        sequence_length=args.sequence_length, learning_rate=args.learning_rate, warmup_steps=max(1, steps // 10),
        mixed_precision="bfloat16", jit_compile=True, strategy="one_device", dropout=0.0,
        checkpoint_every=max(steps, 1), log_every=max(steps // 10, 1), eval_every=0,
        eval_batches=4 if args.smoke else 40)
    job = TrainJob(settings, tuple(sorted(glob.glob(os.path.join(data, "train", "data-*")))), model_dir,
                   valid_files=tuple(sorted(glob.glob(os.path.join(data, "valid", "data-*")))))
    trainer = build_trainer(job, log=lambda line: print(f"  {line}", flush=True))
    start = time.perf_counter()
    metrics = trainer.train()
    return trainer, time.perf_counter() - start, metrics


def budgeted_run(args, data: str, output: str, name: str, budget_s: float, peak: float, init_from: str | None = None):
    """A training run sized to `budget_s` by a 30-step calibration (20 steps in smoke mode): the trainer, steps,
    tokens, seconds, tokens/s and MFU."""
    tokens_per_step = args.global_batch * args.sequence_length
    if args.smoke:
        steps = 20
    else:  # calibrate: compile and time a few steps, then size the run to the budget
        _, seconds, metrics = train(args, data, os.path.join(output, f"{name}-calibration"), 30, init_from)
        rate = metrics.get("tokens_per_second") or 30 * tokens_per_step / seconds  # the last window: compiled
        steps = max(20, int(budget_s * rate / tokens_per_step))
        print(f"calibration: {rate:,.0f} tokens/s → {steps} steps for {budget_s:.0f} s")
    trainer, seconds, _ = train(args, data, os.path.join(output, name), steps, init_from)
    tokens = steps * tokens_per_step
    rate = tokens / seconds
    config = trainer.state.backbone.get_config()
    mfu = rate * flops_per_token(trainer.state.backbone, config["num_layers"], config["hidden_dim"],
                                 args.sequence_length) / peak
    return trainer, steps, tokens, seconds, rate, mfu


def continued_pretraining(args, data: str, output: str, peak: float) -> tuple:
    trainer, steps, tokens, seconds, rate, mfu = budgeted_run(args, data, output, "continued", args.continue_budget_s,
                                                              peak, init_from=args.init_from)
    history = trainer.summary.to_dict()["valid_history"]
    start, end = history[0], history[-1]
    print(f"continued from {args.init_from}: {steps} steps in {seconds:.0f} s, {rate:,.0f} tokens/s, MFU {mfu:.1%}; "
          f"valid context gain {start['context_gain']:+.4f} at step 0 → {end['context_gain']:+.4f} at step "
          f"{end['step']}")
    return trainer, {"init_from": args.init_from, "steps": steps, "seconds": seconds, "tokens_per_second": rate,
                     "mfu": mfu, "valid_at_start": start, "valid": end}


def finetuned(args, backbone, name: str, probe_data: str) -> dict:
    from models.finetuning.run import FROZEN, FinetuneSettings, finetune

    settings = FinetuneSettings(epochs=args.finetune_epochs, probe_seeds=args.probe_seeds)
    result = finetune(backbone, name, probe_data, settings, args.probe_limit or None,
                      log=lambda line: print(f"  {line}", flush=True))
    report = result.report
    lines = {}
    for key, family, set_name, metric, value in probe.headline_results(report):
        if set_name == "test":
            paired = report["paired"][FROZEN][key]
            lines[key] = {"finetuned": value[metric], "frozen": report[FROZEN][family][set_name][metric], **paired}
            print(f"fine-tuned {key}: {value[metric]:.3f} vs frozen probe {lines[key]['frozen']:.3f}, paired "
                  f"difference {paired['difference']:+.3f} [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]")
    return {"probes": lines, "trainable_parameters": report["trainable_parameters"],
            "backbone_parameters": report["backbone_parameters"], "seconds": report["wall_seconds"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="gpu_pretrain-")
    os.makedirs(output, exist_ok=True)
    device, peak, peak_source = accelerator_peak()
    print(f"device: {device}; bf16 peak {peak / 1e12:.1f} TFLOP/s ({peak_source})")
    data = prepare_data(args, output)
    trainer, steps, tokens, seconds, rate, mfu = budgeted_run(args, data, output, "model", args.budget_s, peak)
    summary = trainer.summary.to_dict()
    valid = summary.get("valid") or {}
    gain, (low, high) = valid.get("context_gain", float("nan")), valid.get("context_gain_ci95", [float("nan")] * 2)
    print(f"trained {steps} steps ({tokens:,} tokens) in {seconds:.0f} s: {rate:,.0f} tokens/s (with validation and "
          f"checkpoint), MFU {mfu:.1%} of {device}'s bf16 peak")
    print(f"valid context gain {gain:+.4f} nats [{low:+.4f}, {high:+.4f}] (floor {trainer.floor:.4f})")

    probe_data = args.probe_data or (SHARED if os.path.isdir(os.path.join(SHARED, "ss")) and not args.smoke
                                     else os.path.join(REPO, "models", "probes", "sample_data"))
    embedder = BackboneEmbedder(trainer.state.backbone, name=f"{args.family}-{args.preset}", identity=f"bench:{output}")
    metrics, _ = probe.probe_model(embedder, probe_data, "all", os.path.join(output, "probes"),
                                   probe.ProbeSettings(seeds=args.probe_seeds), args.probe_limit or None, maps=False)
    lines = {}
    for key, family, set_name, name, result in probe.headline_results(metrics):
        if set_name != "test":
            continue
        paired = metrics["paired"]["onehot"][key]
        lines[key] = {"model": result[name], "onehot": metrics["baseline"][family][set_name][name], **paired}
        print(f"{key}: {result[name]:.3f} vs one-hot {lines[key]['onehot']:.3f}, paired difference "
              f"{paired['difference']:+.3f} [{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]")
    results = {"device": device, "bf16_peak_flops": peak, "peak_source": peak_source, "steps": steps,
               "tokens": tokens, "seconds": seconds, "tokens_per_second": rate, "mfu": mfu,
               "valid": valid, "floor": trainer.floor, "probes": lines, "args": vars(args)}
    last, last_name = trainer, f"{args.family}-{args.preset}"
    if args.init_from:
        last, results["continued"] = continued_pretraining(args, data, output, peak)
        last_name = args.init_from
    if args.finetune:
        results["finetune"] = finetuned(args, last.state.backbone, last_name, probe_data)
    with open(os.path.join(output, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    print(f"results: {os.path.join(output, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
