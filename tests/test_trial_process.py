"""A sweep's processes. What a Tune trial's process imports: it validates its runs and builds their
Train run, but only the workers load the model, so it must not import the model's libraries
(omnimer.model.source, omnimer.training.driver). Which Ray processes a run starts, and that its
controller's goes when the run ends."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from omnimer.config import TrainConfig
from omnimer.training.driver import with_absolute_paths

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "configs" / "demo.yaml"

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


def demo_run(output_dir: Path, name: str) -> TrainConfig:
    """The demo config as run ``name`` under ``output_dir``."""
    values = yaml.safe_load(DEMO.read_text()) | {"run": {"output_dir": str(output_dir), "name": name}}
    return with_absolute_paths(TrainConfig.from_dict(values))


@pytest.mark.parametrize("preset", [None, "1"])
def test_a_run_starts_no_preemption_watcher_unless_asked(ray_local, tmp_path, monkeypatch, preset):
    """Ray Train's per-run PreemptionWatcher (one more actor per trial) is off by default; a user's own
    RAY_TRAIN_ENABLE_PREEMPTION_WATCHER wins. The trainer hands the variable on to its controller."""
    from ray.train.v2._internal.constants import get_env_vars_to_propagate

    from omnimer.training.driver import PREEMPTION_WATCHER_ENV, build_trainer

    if preset is None:
        monkeypatch.delenv(PREEMPTION_WATCHER_ENV, raising=False)
    else:
        monkeypatch.setenv(PREEMPTION_WATCHER_ENV, preset)
    cfg = demo_run(tmp_path, "w")
    build_trainer(cfg, dataset=ray_local.data.from_items([{"x": 1}]))
    expected = "0" if preset is None else preset
    assert get_env_vars_to_propagate()[PREEMPTION_WATCHER_ENV] == expected


def test_a_fit_in_the_main_thread_lets_its_controller_go(ray_local, tmp_path):
    """Ray Train's fit in the main thread leaves a SIGINT handler holding its TrainController, which then
    idled beside a whole sweep after the --runs-per-trial auto probe: every fit of ours (the probe's,
    a run's) puts the previous handler back, and the controller's process exits."""
    import signal

    from omnimer.training.driver import fit_releasing_controller

    cfg = demo_run(tmp_path, "p")
    began, previous = time.time(), signal.getsignal(signal.SIGINT)
    assert fit_releasing_controller(idle_trainer(ray_local, cfg)).error is None
    assert signal.getsignal(signal.SIGINT) is previous
    deadline = time.time() + 30
    while "ray::TrainController" in ray_actors(began).values() and time.time() < deadline:
        time.sleep(0.5)
    assert "ray::TrainController" not in ray_actors(began).values()


def test_a_run_on_a_ray_without_state_api_starts_no_placement_group_cleaner(ray_local, tmp_path):
    """A local Ray has no dashboard, so no state API: Ray Train's PlacementGroupCleaner could only log
    that it cannot query the controller, every second, so the run does not start it. (The actors a
    run starts are watched while it runs: each leaves when the run ends.)"""
    import threading

    from omnimer.cluster import state_api_reachable
    from omnimer.training.driver import fit_releasing_controller

    assert not state_api_reachable()
    began, seen, done = time.time(), set(), threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            seen.update(ray_actors(began).values())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert fit_releasing_controller(idle_trainer(ray_local, demo_run(tmp_path, "c"))).error is None
    finally:
        done.set()
        watcher.join()
    assert "ray::TrainController" in seen, f"no controller seen, nothing was checked: {seen}"
    assert "ray::PlacementGroupCleaner" not in seen


def idle_trainer(ray_local, cfg: TrainConfig):
    """The trainer of ``cfg`` with a worker that trains nothing (a lambda: Ray pickles it by value, a
    test module's function it could not import)."""
    from omnimer.training.driver import build_trainer

    return build_trainer(cfg, dataset=ray_local.data.from_items([{"x": 1}]), loop=lambda config: None)


def ray_actors(since: float) -> dict[int, str]:
    """This machine's Ray actor processes started since ``since``: pid → the actor's class, named as
    the bench names it (``ray::TrainController``)."""
    import psutil
    from bench.process_cpu import process_kind

    found = {}
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        kind = process_kind(proc.info["cmdline"] or [])
        if proc.info["create_time"] >= since - 1 and kind.startswith("ray::"):
            found[proc.pid] = kind
    return found
