"""Every registered family's backbone passes the shared checks, on its tiny preset."""

from __future__ import annotations

import keras
import pytest

from models.registry import FAMILIES
from tests.backbone_checks import run_backbone_test


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_backbone_passes_the_shared_checks(family, tmp_path):
    keras.utils.set_random_seed(0)
    run_backbone_test(FAMILIES[family].build_backbone("tiny"), tmp_path)


def test_an_xlnet_with_its_own_layout_passes_the_shared_checks(tmp_path):
    keras.utils.set_random_seed(0)
    run_backbone_test(FAMILIES["protxlnet"].build_backbone("tiny", specials_at_end=True), tmp_path)
