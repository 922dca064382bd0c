import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REAL_MINI = ROOT.parent / "shared" / "data" / "real-mini"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def real_mini() -> Path:
    """Path to ../shared/data/real-mini; the test is skipped when it is absent."""
    if not (REAL_MINI / "coco" / "test_coco.json").exists():
        pytest.skip("../shared/data/real-mini not present")
    return REAL_MINI
