"""Training throughput of ProtBert against keras-hub's BertMaskedLM of the same shape, in one run.

    .venv/bin/python bench/train_throughput.py [--batch 4] [--steps 3] [--repeats 3] [--mixed-precision bfloat16]
        [--jit-compile]

With --all-families, ProtXLNet (two-stream permutation LM, 1/6 of positions predicted) and ProtTXL (causal LM
with a memory as long as the segment) of the same shape are timed too, each on its own objective; their MFU uses
the same FLOP formula, so it understates ProtTXL's (attention over twice the keys) and ProtXLNet's (two streams).

Both models are BERT-base shaped (12 layers, hidden 768, 12 heads, FFN 3072) at sequence length 512, and
train with the same step: masked-LM loss on 15% of the positions, LAMB. Prints tokens/s, the ratio to
keras-hub, and model FLOP utilisation: (6 × non-embedding parameters + 12 × layers × hidden × length) FLOPs
per token, over a dense matmul peak measured in the same run. transformers' PyTorch BertForMaskedLM is not
measured: PyTorch is not part of the project's install. Target (issue #3): ProtBert ≥ 1.0× keras-hub.
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from bench import reference_models
from bench.flops import flops_per_token, matmul_peak
from models import vocabulary
from models.networks.encoder_backbone import EncoderBackbone
from models.objectives.masked_lm import MaskedLM

SHAPE = {"num_layers": 12, "hidden_dim": 768, "num_heads": 12, "intermediate_dim": 3072}


def inputs(batch: int, length: int, predictions: int, seed: int = 0) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(vocabulary.FIRST_RESIDUE_ID, vocabulary.VOCABULARY_SIZE, size=(batch, length))
    token_ids[:, 0], token_ids[:, -1] = vocabulary.CLS_ID, vocabulary.SEP_ID
    positions = np.sort(np.stack([rng.choice(np.arange(1, length - 1), predictions, replace=False)
                                  for _ in range(batch)]), axis=1)
    return {
        "token_ids": tf.constant(token_ids, tf.int32),
        "mask_positions": tf.constant(positions, tf.int32),
        "target_ids": tf.constant(np.take_along_axis(token_ids, positions, 1), tf.int32),
    }


def ours(length: int, activation_name: str) -> tuple[keras.Model, callable]:
    model = MaskedLM(EncoderBackbone(**SHAPE, max_sequence_length=length, activation_name=activation_name))
    return model, lambda batch: model({"token_ids": batch["token_ids"], "mask_positions": batch["mask_positions"]},
                                      training=True)


def keras_hub_bert(length: int):
    return reference_models.keras_hub_bert(SHAPE, length)


def xlnet(length: int):
    from models.protxlnet.backbone import XLNetBackbone
    from models.objectives.permutation_lm import PermutationLM

    model = PermutationLM(XLNetBackbone(**SHAPE, memory_length=0, max_sequence_length=length))
    return model, lambda batch: model(batch, training=True)


def transformer_xl(length: int, lanes: int):
    from models.prottxl.backbone import TransformerXLBackbone
    from models.objectives.causal_lm import CausalLM

    backbone = TransformerXLBackbone(**SHAPE, head_dim=SHAPE["hidden_dim"] // SHAPE["num_heads"],
                                     memory_length=length, max_sequence_length=length)
    model = CausalLM(backbone, lanes)
    return model, lambda batch: model(batch, training=True)


def xlnet_inputs(batch: dict) -> dict:
    from models.objectives.permutation_lm import PREDICT_ONE_IN, permutation_batch

    length = int(batch["token_ids"].shape[1])
    return permutation_batch(batch["token_ids"], tf.constant([0, 1], tf.int64), -(-(length - 2) // PREDICT_ONE_IN))


def causal_inputs(batch: dict) -> dict:
    ids = batch["token_ids"]
    return {"token_ids": ids, "reset": tf.zeros([ids.shape[0]]), "target_ids": tf.roll(ids, -1, axis=1)}


class Candidate:
    """A model with its compiled train step; `time()` measures one window of steps."""

    def __init__(self, name: str, build, batch: dict, jit_compile: bool):
        self.name = name
        self.batch = batch
        self.model, forward = build(int(batch["token_ids"].shape[1]))
        optimizer = keras.optimizers.Lamb(learning_rate=1e-4)
        model = self.model

        @tf.function(jit_compile=jit_compile)
        def train_step(batch):
            with tf.GradientTape() as tape:
                logits = tf.cast(forward(batch), tf.float32)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch["target_ids"], logits,
                                                                                   from_logits=True))
                scaled = optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        self.train_step = train_step
        train_step(batch).numpy()  # trace, compile, build the optimizer
        self.best_seconds = float("inf")

    def time(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.train_step(self.batch)
        loss.numpy()
        self.best_seconds = min(self.best_seconds, (time.perf_counter() - start) / steps)

    def report(self, peak: float) -> dict:
        batch_size, length = self.batch["token_ids"].shape
        tokens_per_second = batch_size * length / self.best_seconds
        per_token = flops_per_token(self.model, SHAPE["num_layers"], SHAPE["hidden_dim"], length)
        return {"name": self.name, "seconds_per_step": self.best_seconds, "tokens_per_second": tokens_per_second,
                "mfu": per_token * tokens_per_second / peak, "parameters": self.model.count_params()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=4, help="timed windows per model, interleaved")
    parser.add_argument("--mixed-precision", choices=("none", "bfloat16", "float16"), default="none")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--all-families", action="store_true",
                        help="also time ProtXLNet and ProtTXL of the same shape on their objectives")
    parser.add_argument("--activation", choices=("gelu", "gelu_new"), default="gelu",
                        help="ours: gelu is ProtBert's exact (erf) GELU; keras-hub's BERT uses the tanh "
                        "approximation (gelu_new)")
    args = parser.parse_args()
    if args.mixed_precision != "none":
        keras.config.set_dtype_policy(f"mixed_{args.mixed_precision}")
    compute_dtype = "float32" if args.mixed_precision == "none" else args.mixed_precision
    device = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name
    peak = matmul_peak(compute_dtype)
    batch = inputs(args.batch, args.length, predictions=int(0.15 * args.length))
    print(f"device {device}; {os.cpu_count()} CPUs; batch {args.batch} × {args.length} tokens; "
          f"precision {args.mixed_precision}; XLA {args.jit_compile}; matmul peak {peak / 1e9:,.1f} GFLOP/s")
    candidates = [Candidate(f"ProtBert (ours, {args.activation})", partial(ours, activation_name=args.activation),
                            batch, args.jit_compile),
                  Candidate("keras-hub BertMaskedLM", keras_hub_bert, batch, args.jit_compile)]
    if args.all_families:  # same shape and length; their own objectives (no reference implementation to compare)
        candidates += [
            Candidate("ProtXLNet (ours, permutation LM)", xlnet, xlnet_inputs(batch), args.jit_compile),
            Candidate("ProtTXL (ours, causal LM + memory)", partial(transformer_xl, lanes=args.batch),
                      causal_inputs(batch), args.jit_compile)]
    for repeat in range(args.repeats):  # interleaved windows in alternating order, best of each: noisy machine
        for candidate in candidates if repeat % 2 == 0 else candidates[::-1]:
            candidate.time(args.steps)
    rows = [candidate.report(peak) for candidate in candidates]
    print(f"{'model':32} {'params':>12} {'s/step':>8} {'tokens/s':>10} {'MFU':>6}")
    for row in rows:
        print(f"{row['name']:32} {row['parameters']:12,} {row['seconds_per_step']:8.2f} "
              f"{row['tokens_per_second']:10,.0f} {row['mfu']:6.1%}")
    ratio = rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"]
    print(f"ProtBert vs keras-hub tokens/s: {ratio:.2f}x (target >= 1.0x: {'met' if ratio >= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
