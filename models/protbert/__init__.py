"""ProtBert: BERT (post-LN, GELU, learned absolute positions) trained with masked LM on proteins."""

from models.family import Family
from models.networks.encoder_backbone import EncoderBackbone
from models.objectives.masked_lm import MASKED_LM
from models.protbert.convert import load_checkpoint
from models.protbert.encoder_convert import CHECKPOINT_FILES
from models.protbert.presets import PRESETS

FAMILY = Family(
    name="protbert", description="BERT, masked LM (15%, 80/10/10), learned absolute positions",
    objective=MASKED_LM, backbone=EncoderBackbone, presets=PRESETS, import_checkpoint=load_checkpoint,
    position_table=True, checkpoint_files=CHECKPOINT_FILES,
)
