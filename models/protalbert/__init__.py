"""ProtAlbert: ALBERT (factorised embedding, one Transformer layer shared by all layers) with masked LM."""

from models.family import Family
from models.networks.encoder_backbone import EncoderBackbone
from models.objectives.masked_lm import MASKED_LM
from models.protalbert.convert import load_checkpoint
from models.protalbert.presets import PRESETS
from models.protbert.encoder_convert import CHECKPOINT_FILES

FAMILY = Family(
    name="protalbert", description="ALBERT, masked LM, one shared layer, factorised embedding",
    objective=MASKED_LM, backbone=EncoderBackbone, presets=PRESETS, import_checkpoint=load_checkpoint,
    position_table=True, checkpoint_files=CHECKPOINT_FILES,
)
