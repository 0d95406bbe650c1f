"""ProtT5: T5's encoder-decoder pretrained by single-residue denoising; the encoder is the embedding model."""

from models.family import Family
from models.objectives.denoising import DENOISING
from models.prott5.backbone import T5EncoderBackbone
from models.prott5.convert import load_checkpoint
from models.prott5.presets import PRESETS

FAMILY = Family(
    name="prott5",
    description="T5 encoder-decoder, single-residue denoising, relative position buckets, no length limit",
    objective=DENOISING,
    backbone=T5EncoderBackbone,
    presets=PRESETS,
    import_checkpoint=load_checkpoint,
    checkpoint_files=("config.json", "spiece.model", "model.safetensors or pytorch_model.bin"),
)
