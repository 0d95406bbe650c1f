"""ProtTXL: Transformer-XL's causal language model on protein sequences."""

from models.family import Family
from models.objectives.causal_lm import CAUSAL_LM
from models.prottxl.backbone import TransformerXLBackbone
from models.prottxl.convert import load_checkpoint
from models.prottxl.presets import PRESETS

FAMILY = Family(
    name="prottxl",
    description="Transformer-XL, causal LM on segment streams with memory, relative positions",
    objective=CAUSAL_LM,
    backbone=TransformerXLBackbone,
    presets=PRESETS,
    import_checkpoint=load_checkpoint,
    checkpoint_files=("config.json", "model.safetensors or pytorch_model.bin", "vocab.txt (optional)"),
)
