"""Can the model use context? A diagnostic for the masked-LM plateau, ours against keras-hub's BERT.

Each synthetic protein is a random 60-residue half written twice, so a masked residue is predictable from its
copy 60 positions away (unless the copy is masked too), and not at all from residue frequencies (uniform:
ln 20 = 3.00 nats). Both models (the `small` ProtBert shape, no dropout) train on the same batches from our
input pipeline (Beam-written TFRecords, in-graph masking) with the same optimizer; the script prints both loss
curves. A model that uses context falls far below 3.0; a bug in attention, positions or masking would show as
ours staying where keras-hub falls.

    .venv/bin/python bench/copy_task.py [--steps 600]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import gzip
import random
import tempfile

import keras
import tensorflow as tf

from beam_jobs import fasta_to_tfrecords
from bench import reference_models
from models.input_pipeline import InputConfig
from models.networks.encoder_backbone import EncoderBackbone
from models.objectives.masked_lm import MaskedLM, masked_lm_dataset

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
SHAPE = {"num_layers": 4, "hidden_dim": 256, "num_heads": 4, "intermediate_dim": 1024}


def write_copy_proteins(path: str, count: int, half: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt") as handle:
        for index in range(count):
            part = "".join(rng.choice(RESIDUES) for _ in range(half))
            handle.write(f">copy{index}\n{part}{part}\n")


def ours(length: int):
    model = MaskedLM(EncoderBackbone(**SHAPE, max_sequence_length=length))
    return model, lambda batch: model({"token_ids": batch["token_ids"], "mask_positions": batch["mask_positions"]},
                                      training=True)


def keras_hub_bert(length: int):
    return reference_models.keras_hub_bert(SHAPE, length)


def train(build, batches: list[dict], length: int, learning_rate: float) -> list[float]:
    keras.utils.set_random_seed(0)
    model, forward = build(length)
    schedule = keras.optimizers.schedules.PolynomialDecay(learning_rate, len(batches), 0.0)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.01)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            logits = tf.cast(forward(batch), tf.float32)
            losses = keras.losses.sparse_categorical_crossentropy(batch["target_ids"], logits, from_logits=True)
            loss = tf.reduce_sum(losses * batch["target_weights"]) / tf.reduce_sum(batch["target_weights"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return [float(step(batch)) for batch in batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--half", type=int, default=60)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()
    length = 2 * args.half + 2
    with tempfile.TemporaryDirectory() as scratch:
        fasta = os.path.join(scratch, "copy.fasta.gz")
        write_copy_proteins(fasta, 4000, args.half)
        fasta_to_tfrecords.run(["--input", fasta, "--output-dir", os.path.join(scratch, "data")])
        files = tf.io.gfile.glob(os.path.join(scratch, "data", "train", "data-*"))
        dataset = masked_lm_dataset(files, InputConfig(sequence_length=length, batch_size=args.batch))
        batches = [dict(batch) for batch in dataset.take(args.steps)]
    curves = {name: train(build, batches, length, args.learning_rate)
              for name, build in (("ProtBert (ours)", ours), ("keras-hub BertMaskedLM", keras_hub_bert))}
    window = max(args.steps // 12, 1)
    print(f"masked-LM loss, mean over {window} steps (uniform guess: 3.00 nats)")
    print("steps        " + "  ".join(f"{name:>24}" for name in curves))
    for start in range(0, args.steps, window):
        row = [sum(c[start:start + window]) / len(c[start:start + window]) for c in curves.values()]
        print(f"{start + window:5d}        " + "  ".join(f"{value:24.3f}" for value in row))


if __name__ == "__main__":
    main()
