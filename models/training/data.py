"""What a training run reads: the distributed batches of a phase, the no-context floor of the training split, and
errors that name the shard that cannot be read."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from models.input_pipeline import InputConfig, first_unreadable_file
from models.objectives.objective import Objective
from models.training.floor import no_context_floor, residue_counts
from models.training.settings import Phase, TrainingSettings
from models.training.state import TrainingState


class TrainingDataError(ValueError):
    """The training data cannot be used; the message names the file or the split."""


def unreadable_data_error(error: tf.errors.DataLossError, files: Sequence[str]) -> TrainingDataError:
    """`error` (TensorFlow's, which names no file) as one naming the shard that cannot be read."""
    damaged = first_unreadable_file(files)
    where = f"{damaged[0]}: {damaged[1]}" if damaged else f"a training or valid shard: {error.message}"
    return TrainingDataError(f"cannot read {where}; regenerate it (prottrans-preprocess) or leave it out (a "
                             "resumed run keeps its last checkpoint)")


def training_floor(objective: Objective, train_files: Sequence[str], all_files: Sequence[str]) -> float:
    """The no-context floor of `objective` from the residue composition of the training split."""
    try:
        counts, proteins = residue_counts(train_files)
    except tf.errors.DataLossError as error:
        raise unreadable_data_error(error, all_files) from None
    if not proteins:
        raise TrainingDataError(f"the training split holds no record ({len(train_files)} file(s), e.g. "
                                f"{sorted(train_files)[0]}): nothing to train on")
    return no_context_floor(objective, counts, proteins)


def holds_records(files: Sequence[str], all_files: Sequence[str]) -> bool:
    try:
        return residue_counts(files, limit=1)[1] > 0
    except tf.errors.DataLossError as error:
        raise unreadable_data_error(error, all_files) from None


def distributed_batches(state: TrainingState, settings: TrainingSettings, files: Sequence[str], phase: Phase,
                        seed: int, shard: bool) -> tf.distribute.DistributedDataset:
    """The objective's batches of `phase` from `files`, distributed over the replicas: with `shard`, each input
    pipeline reads its own share of the files (training); without, every replica reads them whole (the valid
    split, which may have fewer files than there are input pipelines; summed sums and counts keep the mean)."""
    micro_batch = phase.global_batch // settings.accumulation_steps
    objective = state.family.objective

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        config = InputConfig(sequence_length=phase.sequence_length, seed=seed,
                             batch_size=context.get_per_replica_batch_size(micro_batch))
        return objective.dataset(files, config, context if shard else None, state.backbone)

    return state.strategy.distribute_datasets_from_function(dataset_fn)
