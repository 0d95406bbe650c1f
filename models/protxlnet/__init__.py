"""ProtXLNet: XLNet's permutation language model on protein sequences."""

from models.family import Family
from models.objectives.permutation_lm import PERMUTATION_LM
from models.protxlnet.backbone import XLNetBackbone
from models.protxlnet.convert import load_checkpoint
from models.protxlnet.presets import PRESETS

FAMILY = Family(
    name="protxlnet",
    description="XLNet, permutation LM (two-stream attention), relative positions, memory",
    objective=PERMUTATION_LM,
    backbone=XLNetBackbone,
    presets=PRESETS,
    import_checkpoint=load_checkpoint,
    checkpoint_files=("config.json", "spiece.model", "model.safetensors or pytorch_model.bin"),
)
