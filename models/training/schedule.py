"""The learning rate as the paper used it and transformers' `get_linear_schedule_with_warmup` computes it: linear
warm-up to a peak, then linear decay to zero."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="prottrans")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`peak` after `warmup_steps` optimizer updates, falling linearly to 0 at `total_steps`. Update n (from 0)
    takes ``peak · n / warmup_steps`` during the warm-up (so the first update takes 0, as in transformers), then
    ``peak · (total_steps − n) / (total_steps − warmup_steps)``.

    Keras calls a schedule with its micro-step counter; with gradient accumulation that counts every
    micro-batch, so the count is divided by `accumulation_steps` to give optimizer updates.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, accumulation_steps: int = 1):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.accumulation_steps = accumulation_steps

    def __call__(self, micro_step):
        step = ops.cast(ops.floor_divide(micro_step, self.accumulation_steps), "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        rising = self.peak * step / warmup
        falling = self.peak * ops.maximum(0.0, (self.total_steps - step) / decay)
        return ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "accumulation_steps": self.accumulation_steps}
