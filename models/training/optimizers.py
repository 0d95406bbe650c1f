"""The optimizers a run can use, by name."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from models.training.schedule import WarmupLinearDecay


@keras.saving.register_keras_serializable(package="prottrans")
class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW with epsilon where torch's AdamW (and transformers') puts it: added to the bias-corrected
    root of the second moment, ``lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)``. Keras adds it to the uncorrected root
    (Kingma and Ba's ε̂), which makes ε about 32× larger at the first step; measured on the training-parity
    fixtures, the final weights were 7e-3 from torch's with Keras' placement and 1.5e-4 with this one."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        first_correction = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        second_correction = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(second_correction)), self.epsilon)
        self.assign_sub(variable, ops.multiply(ops.divide(m, denominator), lr / first_correction))


def decays(variable) -> bool:
    """Whether weight decay applies to `variable`: not to norm parameters (LayerNorm, T5's RMS norm) nor to biases
    (any weight whose name says bias: T5's relative-position bias table, XLNet's and Transformer-XL's content and
    position biases), as transformers' Trainer decides by parameter name."""
    layer = variable.path.split("/")[-2] if "/" in variable.path else ""
    return "bias" not in variable.path and "norm" not in layer


# LAMB is the paper's (huge batches); AdamW takes larger steps per update, which suits small batches.
OPTIMIZERS = {"adamw": AdamW, "lamb": keras.optimizers.Lamb}


def build_optimizer(variables: Sequence, *, name: str = "adamw", learning_rate: float, warmup_steps: int,
                    total_steps: int, weight_decay: float, epsilon: float = 1e-8, clip_norm: float = 1.0,
                    accumulation_steps: int = 1, loss_scaling: bool = False) -> keras.optimizers.Optimizer:
    """The optimizer `name` for `variables`, built: linear warm-up and decay (`WarmupLinearDecay`), decoupled weight
    decay on what `decays` selects, the gradient clipped to `clip_norm` by global norm (0: no clipping), updates
    every `accumulation_steps` micro-batches, and dynamic loss scaling for float16 when `loss_scaling`."""
    optimizer = OPTIMIZERS[name](
        learning_rate=WarmupLinearDecay(learning_rate, warmup_steps, total_steps, accumulation_steps),
        weight_decay=weight_decay,
        epsilon=epsilon,
        global_clipnorm=clip_norm or None,
        gradient_accumulation_steps=accumulation_steps if accumulation_steps > 1 else None,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if not decays(v)])
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer
