"""Model folders that users already have, written before the task models moved into `models.objectives`
(tests/fixtures/pre_objectives: one tiny run per family), still embed as they did and still resume training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.export import embedding
from models.training.checkpoints import load_trained_backbone
from models.training.settings import Phase
from models.training.trainer import build_trainer
from tests.conftest import train_job

STORED = Path(__file__).parent / "fixtures" / "pre_objectives"
EXPECTED = json.loads((STORED / "expected_protein_embeddings.json").read_text())


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_a_model_folder_from_before_the_objectives_moved_embeds_and_resumes(family, sample_shards, tmp_path):
    folder = tmp_path / family
    shutil.copytree(STORED / family, folder)
    backbone, _ = load_trained_backbone(str(folder))
    (embedded,) = embedding.embed(backbone, ["MKTAYIAKQRQISFVK"])
    np.testing.assert_allclose(embedded.protein, EXPECTED[family], atol=1e-5)

    logged: list[str] = []
    job = train_job(sample_shards, folder, Phase(32, 3, 4), family=family, log_every=1, checkpoint_every=2,
                    warmup_steps=1, dropout=None)
    trainer = build_trainer(job, log=logged.append)
    metrics = trainer.train()
    assert any(line.startswith("resumed from") and line.endswith("at step 2") for line in logged), logged
    assert trainer.step == 3 and np.isfinite(metrics["loss"])
