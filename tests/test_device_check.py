"""scripts/device_check.sh on a machine without a usable CUDA GPU: one clear line and exit 0 (CI stays green)."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_check.sh"


def test_device_check_skips_cleanly_without_a_gpu(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "DEVICE_CHECK_OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "device_check: no GPU: skipped"
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_gpu_marker_is_registered(pytestconfig):
    """Registered, so `-m gpu` selects and `-m "not gpu"` deselects without an unknown-marker warning."""
    assert any(m.startswith("gpu:") for m in pytestconfig.getini("markers"))
