"""The benchmark scripts that CI can run on a CPU run end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_pretraining_bench_runs_on_cpu_in_smoke_mode(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_pretrain.py"), "--smoke", "--output",
                             str(tmp_path), "--init-from", str(REPO / "tests" / "fixtures" / "hf" / "protbert"),
                             "--finetune", "--finetune-epochs", "1"],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 20 and results["tokens_per_second"] > 0 and 0 < results["mfu"] < 1
    assert math.isfinite(results["valid"]["context_gain"])
    assert sorted(results["probes"]) == ["localization/test/q10", "localization/test/q2", "ss/test/q3", "ss/test/q8"]
    assert "MFU" in result.stdout and "valid context gain" in result.stdout
    continued = results["continued"]  # from the imported checkpoint: validated before its first step
    assert continued["steps"] == 20 and continued["valid_at_start"]["step"] == 0 and continued["valid"]["step"] == 20
    assert 0 < continued["mfu"] < 1
    finetuned = results["finetune"]
    assert sorted(finetuned["probes"]) == sorted(results["probes"]) and finetuned["trainable_parameters"] > 0
    assert all(line["ci95"][0] <= line["difference"] <= line["ci95"][1] for line in finetuned["probes"].values())
