"""The record that describes one model family (backbone, presets, checkpoint converter, objective);
:mod:`models.registry` lists the families."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import keras

from models.networks.backbone import Backbone
from models.objectives.objective import Objective


@dataclass(frozen=True)
class Family:
    """One model family.

    `objective` (:mod:`models.objectives`) builds the training model around the backbone and gives its batches
    and no-context floor. `import_checkpoint(folder, log)` reads a Hugging Face checkpoint folder into the objective's
    task model (its `.backbone` is what is served), keeping the checkpoint's whole vocabulary and saying on `log`
    which extra heads it skipped; None where no published format is supported.
    `position_table`: the backbone has learned absolute positions, which training cuts at the longest length it
    trains.
    """

    name: str
    description: str
    objective: Objective
    backbone: type
    presets: Mapping[str, Mapping[str, Any]]
    import_checkpoint: Callable[..., keras.Model] | None = None
    position_table: bool = False
    checkpoint_files: Sequence[str] = field(default_factory=tuple)  # what `prottrans-import` needs, for its help

    def __post_init__(self):
        if not isinstance(self.objective, Objective):
            raise ValueError(f"{self.name}: objective must be an Objective (models.objectives), not "
                             f"{self.objective!r}")
        missing = {"tiny", "small", "paper"} - set(self.presets)
        if missing:
            raise ValueError(f"{self.name}: presets {sorted(missing)} are missing")

    def preset_config(self, preset: str) -> dict[str, Any]:
        """The backbone config of a preset; the family's own name means its `paper` preset."""
        name = "paper" if preset == self.name else preset
        if name not in self.presets:
            raise ValueError(f"{self.name} has no preset {preset!r}; presets: {sorted(self.presets)} (or {self.name!r})")
        return dict(self.presets[name])

    def build_backbone(self, preset: str, **overrides: Any) -> Backbone:
        """A new, randomly initialised backbone of a preset (with any config `overrides`)."""
        return self.backbone(**{**self.preset_config(preset), **overrides}, name=f"{self.name}_backbone")
