"""What a sweep's Tune trial process imports: it validates its runs and builds their Train run, but
only the workers load the model, so it must not import the model's libraries (omnimer.model.source,
omnimer.training.driver)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What a Tune trial's process does before its workers start: import the trial and the Train driver,
# check the model path, and pickle the workers' function for the TorchTrainer.
TRIAL_PROCESS = """
import sys
import ray.cloudpickle
import omnimer.sweep.relay, omnimer.sweep.trial
from omnimer.model.source import resolve_checkpoint
from omnimer.training import driver
resolve_checkpoint(sys.argv[1])
blob = ray.cloudpickle.dumps(driver.train_loop_per_worker)
assert ray.cloudpickle.loads(blob) is driver.train_loop_per_worker and len(blob) < 200, blob
heavy = ["transformers", "peft", "deepspeed", "omnimer.collate", "omnimer.training.worker"]
heavy += ["omnimer.model.load"]
print(",".join(m for m in heavy if m in sys.modules))
"""


def test_a_trials_process_does_not_import_what_only_its_workers_use(tmp_path):
    """Only the workers load the model and train: a trial's process that imported transformers, peft
    or DeepSpeed (about 3 CPU-s) would spend, at every trial's start, CPU the other trials' workers
    wait for. The workers' function is pickled by reference to the driver's module."""
    (tmp_path / "config.json").write_text("{}")
    command = [sys.executable, "-c", TRIAL_PROCESS, str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"imported in a trial's process: {result.stdout.strip()}"
