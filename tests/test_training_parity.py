"""Step-for-step parity of the trainer with transformers + torch: from the same tiny random checkpoint and the same
50 batches of each objective (masked LM, T5 denoising, permutation LM, causal LM with memory), our trainer with
the reference's optimizer settings (AdamW, warm-up then linear decay, weight-decay exclusions, gradient clipping,
float32, dropout 0) gives the same loss at every step and the same final weights. The reference trajectories are
stored (tests/fixtures/make_training_parity.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from models.objectives.objective import TARGET_WEIGHTS
from models.registry import get_family
from models.training.schedule import WarmupLinearDecay
from models.training.settings import TrainingSettings
from models.training.state import build_training_state
from models.training.trainer import Trainer, TrainJob
from models.training.validation import target_losses
from tests.fixtures.make_training_parity import OPTIMIZER, OUT, SETUPS, STEPS, read_batches

LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4  # after 50 updates of up to 1e-3 each, on weights of scale 0.3
# Weights whose gradient is zero up to rounding, so that Adam's normalisation turns rounding noise into full steps:
# attention key biases (softmax ignores a shift shared by all keys) and the relative-position projections (the
# lowest-frequency sinusoids are constant across the positions a segment spans). The losses do not see them.
LOSS_BLIND = ("key/bias", "position_kernel")
LOSS_BLIND_ATOL = 1e-3


def replay(name: str, model_dir, strategy: str = "default") -> tuple:
    """Our trainer's step function over the stored batches of `name`: the model state and every step's loss."""
    checkpoint, length, batch = SETUPS[name]
    settings = TrainingSettings(family=name, init_from=str(checkpoint), steps=STEPS, global_batch=batch,
                                sequence_length=length, strategy=strategy, **OPTIMIZER)
    job = TrainJob(settings, ("not read",), str(model_dir))
    state = build_training_state(settings, str(model_dir), job.phases, job.total_steps, log=lambda line: None)
    train_steps = Trainer(job, state, floor=0.0).train_function()
    _, batches = read_batches(OUT / name)
    signature = {key: tf.TensorSpec([None] * value.ndim, tf.as_dtype(value.dtype)) for key, value in batches[0].items()}
    dataset = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=signature)
    iterator = iter(state.strategy.experimental_distribute_dataset(dataset))
    losses = []
    for _ in range(STEPS):
        loss_sum, weight, _, _ = train_steps(iterator, tf.constant(1)).numpy()
        losses.append(loss_sum / weight)
    return state, np.array(losses)


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_every_step_loss_and_the_final_weights_match_transformers(name, tmp_path):
    reference = np.load(OUT / name / "reference.npz")
    state, losses = replay(name, tmp_path)
    np.testing.assert_allclose(losses, reference["losses"], rtol=LOSS_RTOL)
    assert losses[-1] < losses[0]  # the steps train: a frozen model would match nothing here
    final = get_family(name).import_checkpoint(str(OUT / name / "final"), log=lambda line: None)
    ours, theirs = state.model.trainable_weights, final.trainable_weights
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    for trained, expected in zip(ours, theirs):
        difference = np.abs(trained.numpy() - expected.numpy()).max()
        tolerance = LOSS_BLIND_ATOL if trained.path.endswith(LOSS_BLIND) else WEIGHT_ATOL
        assert difference <= tolerance, f"{trained.path}: {difference:.2e} from transformers' final weights"


def test_the_learning_rate_follows_transformers_linear_schedule_with_warmup():
    reference = np.load(OUT / "protbert" / "reference.npz")["learning_rates"]
    schedule = WarmupLinearDecay(OPTIMIZER["learning_rate"], OPTIMIZER["warmup_steps"], STEPS)
    ours = np.array([float(schedule(step)) for step in range(STEPS)])
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-12)
    assert ours[0] == 0.0 and ours[OPTIMIZER["warmup_steps"]] == pytest.approx(OPTIMIZER["learning_rate"])


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_the_validation_loss_of_an_imported_checkpoint_is_transformers_loss(name):
    """What a run started with --init-from reports before its first step: a validation segment is read with
    transformers' default memory (none for XLNet, zeros for Transformer-XL)."""
    model = get_family(name).import_checkpoint(str(SETUPS[name][0]), log=lambda line: None)
    batch = {key: tf.constant(value) for key, value in read_batches(OUT / name)[1][0].items()}
    _, losses = target_losses(model, get_family(name).objective, batch, training=False)
    weights = batch[TARGET_WEIGHTS]
    loss = float(tf.reduce_sum(losses * weights) / tf.reduce_sum(weights))
    assert loss == pytest.approx(float(np.load(OUT / name / "reference.npz")["first_valid_loss"]), rel=1e-5)


def test_two_replicas_clip_the_global_gradient_and_take_the_same_steps(tmp_path):
    """Under a mirrored strategy each replica holds half of each batch: the norm clipped is the global gradient's
    (the masked-LM fixture's gradients exceed the limit in 12 of its 50 steps), so the losses are the same as on one."""
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np
        from tests.test_training_parity import replay
        state, losses = replay("protbert", {str(tmp_path)!r}, strategy="mirrored")
        print("replicas", state.strategy.num_replicas_in_sync)
        np.save({str(tmp_path / "losses.npy")!r}, losses)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    reference = np.load(OUT / "protbert" / "reference.npz")
    assert (reference["gradient_norms"] > OPTIMIZER["gradient_clip_norm"]).sum() >= 10
    np.testing.assert_allclose(np.load(tmp_path / "losses.npy"), reference["losses"], rtol=LOSS_RTOL)
