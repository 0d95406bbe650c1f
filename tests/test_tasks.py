"""Every registered family's objective passes the shared task checks, on its tiny preset and the bundled sample."""

from __future__ import annotations

import pytest

from models.registry import FAMILIES
from tests.task_checks import run_task_checks


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_trains_exports_and_serves_through_its_objective(family, sample_dataset, tmp_path):
    run_task_checks(FAMILIES[family], sample_dataset, tmp_path)
