"""sweeps/aux_ablation.py end to end on a local CPU Ray: the smoke sweep in both modes, re-runs that
start nothing, a driver killed mid-sweep that resumes without losing or repeating a trial, and the
smoke sweep with its storage path in an S3 bucket (moto's S3 server on loopback). The cluster path
(`ray job submit`, cluster restarts) is in test_sweeps_cluster_e2e.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from sweepfiles import smoke_ablation, trial_dirs

from omnimer.subsets import LATTICE, subset_name

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(REPO / "sweeps" / "aux_ablation.py")]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    """One storage root for the module: the smoke test's embedded data is built there once."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture
def env():
    ray_tmp = tempfile.mkdtemp(prefix="omr-", dir="/tmp")
    out = dict(os.environ, RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    out.pop("RAY_ADDRESS", None)
    yield out
    shutil.rmtree(ray_tmp, ignore_errors=True)


def sweep(args: list[str], env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(SCRIPT + args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    return result


def records(experiment: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text()) for p in sorted((experiment / "runs").glob("*/record.json"))
    }


def test_search_smoke_writes_the_study_and_a_rerun_adds_no_trial(storage, env):
    import optuna

    args = ["--mode", "search", "--smoke-test", "--num-samples", "3", "--name", "srch"]
    sweep([*args, "--storage-path", str(storage)], env)
    experiment = storage / "srch"
    runs = records(experiment)
    assert len(runs) == 3
    assert {r["status"] for r in runs.values()} <= {"finished", "stopped"}
    study = optuna.load_study(study_name="srch", storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert len(study.trials) == 3
    for trial in study.trials:
        assert {"model.lora.rank", "train.lr", "loss.scheme", "loss.aux_weight_face"} <= set(trial.params)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed and all(0 <= t.value <= 1 for t in completed)
    by_id = {r["sweep"]["trial_id"]: r for r in runs.values()}
    assert all(r["config"]["run"]["name"] == f"trial-{i}" for i, r in by_id.items())

    sweep([*args, "--storage-path", str(storage)], env)
    assert records(experiment) == runs
    study = optuna.load_study(study_name="srch", storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert len(study.trials) == 3


def test_the_grid_survives_a_killed_driver_without_losing_or_repeating_trials(storage, env):
    """The whole ablation grid (seed 0) in 2 trials of 4 runs each (``--runs-per-trial 4``: each
    trial trains its runs one after another in one worker group), planned first (``--plan``: a probe,
    no trial), its driver killed after two runs as a lost head node's would be, then resumed (with
    ``--runs-per-trial auto``, which keeps the sweep's 4 and probes nothing): each of
    the 8 cells finished once with its λ, the runs finished before the kill are untouched, and the
    sweep closes with the analysis package's table, then planned vs actual. (An uninterrupted
    ablation of one run per trial, its summary and its no-op re-run are the S3 test's; a killed and
    resumed sweep of one run per trial is the cluster scenario's.)"""
    args = smoke_ablation("killed", str(storage), "--runs-per-trial", "4")
    experiment = storage / "killed"
    # First its plan: one probe trial, no trial of the sweep.
    planned = sweep([*args, "--plan"], env)
    plan = json.loads((experiment / "plan.json").read_text())
    assert plan["runs"] == 8 and plan["trials"] == 2 and plan["probe"]["steps"] == 2
    assert plan["layout"]["workers"] == 1 and plan["runs_per_trial"] == 4
    assert sorted(run for runs in plan["groups"].values() for run in runs) == sorted(
        f"{subset_name(s)}-seed0" for s in LATTICE
    )
    measured = next(row for row in plan["layouts"] if row["measured"])
    assert (
        set(measured["trial_seconds"]) == set(plan["groups"]) == {"group-none-seed0", "group-text+face-seed0"}
    )
    assert set(plan["runs_per_trial_walls"]) == {"1", "2", "4", "8"} and "; fastest: --runs-per-trial " in (
        planned.stdout
    )
    assert 0 < plan["probe"]["seconds_per_step"] < plan["probe"]["startup_seconds"]
    # A later run's set-up has no imports and no first DeepSpeed initialisation to pay.
    assert 0 < plan["probe"]["later_setup_seconds"] < sum(plan["probe"]["setup_seconds"].values())
    assert set(plan["probe"]["tokens_per_clip"]) == {"main", "text", "face", "prosody"}
    assert (
        "tokens per clip: main " in planned.stdout and "<- the config's layout (measured)" in planned.stdout
    )
    assert not (experiment / "runs").exists() and not (experiment / "sweep.json").exists()
    log = open(storage / "killed.log", "w")  # noqa: SIM115 - closed below, after the process ends
    driver = subprocess.Popen(
        SCRIPT + args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
    )
    try:
        deadline = time.time() + 600
        finished: dict[str, dict] = {}
        while time.time() < deadline and driver.poll() is None:
            finished = {n: r for n, r in records(experiment).items() if r["status"] == "finished"}
            if len(finished) >= 2:
                break
            time.sleep(1)
        assert driver.poll() is None and 2 <= len(finished) < 8, "the sweep ended before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)  # the driver dies as a lost head node's would
        driver.wait()
    finally:
        # The local Ray the driver started (same session) goes with it.
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    time.sleep(2)

    resumed = sweep(smoke_ablation("killed", str(storage), "--runs-per-trial", "auto"), env)
    assert re.search(r"--runs-per-trial auto: 4, as \S+/killed was started", resumed.stderr)
    assert json.loads((experiment / "plan.json").read_text())["created"] == plan["created"]
    runs = records(experiment)
    assert len(runs) == 8 and {r["status"] for r in runs.values()} == {"finished"}
    assert len(trial_dirs(experiment)) == 2
    # Each trial's checkpoints are its worker group's, each naming its run; the runs' dirs hold none.
    assert sorted(p.name for p in (experiment / "runs").glob("group-*")) == sorted(plan["groups"])
    assert not any(p.is_dir() for name in runs for p in (experiment / "runs" / name).glob("checkpoint_*"))
    for name, record in finished.items():
        assert runs[name] == record  # kept as it was, not trained again
    assert len({tuple(r["sweep"]["subset"].values()) for r in runs.values()}) == 8
    for name, record in runs.items():
        assert record["sweep"]["experiment"] == "killed" and record["sweep"]["seed"] == 0
        assert record["config"]["run"]["name"] == name
        for task, enabled in record["sweep"]["subset"].items():
            assert (record["config"]["loss"][f"aux_weight_{task}"] > 0) is enabled
        assert len(record["epochs"]) == 2 and 0 <= record["test"]["macro_f1"] <= 1
        assert all(0 < epoch["cpu_seconds"] for epoch in record["epochs"])
        assert list((experiment / "runs" / name / "tensorboard").glob("events.out.tfevents.*"))
    assert "8 finished" in resumed.stdout
    # The closing summary is the analysis package's: the ablation table, then the Shapley lines.
    assert "Aux-task ablation of killed (emotion, test split; trials: 8 finished)" in resumed.stdout
    cell = re.compile(r"\| [✓✗] \| [✓✗] \| [✓✗] \| 1 \| 0 \|")
    rows = [line for line in resumed.stdout.splitlines() if cell.match(line)]
    assert len(rows) == 8 and rows[0].startswith("| ✗ | ✗ | ✗ |") and rows[-1].startswith("| ✓ | ✓ | ✓ |")
    assert re.search(r"^  prosody  Shapley [+-]\d\.\d{3}", resumed.stdout, re.MULTILINE)
    assert "planned vs actual (plan.json of " in resumed.stdout
    assert re.search(
        r"sweep wall: planned [\d.]+ min for 2 trial\(s\); invocation 2: [\d.]+ min for \d run\(s\)",
        resumed.stdout,
    )


def test_ablation_smoke_on_s3_writes_every_output_to_the_bucket(s3_bucket, env, tmp_path):
    """``--storage-path s3://...``: Tune's state, sweep.json, invocations.json and every trial's record,
    TensorBoard events, best adapter and checkpoints land in the bucket; a re-run starts no trial; the
    analysis reads the experiment from the bucket."""
    from omnimer import storage

    # s3_bucket pointed this process's AWS_* variables (endpoint, dummy credentials) at the server.
    names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    s3_env = dict(
        env, **{k: os.environ[k] for k in (*names, "AWS_EC2_METADATA_DISABLED", "OMNIMER_CACHE_DIR")}
    )
    experiment = f"s3://{s3_bucket}/exp/s3smoke"
    # Two cells of the grid (--subsets): the storage path is what this test is about.
    args = smoke_ablation("s3smoke", f"s3://{s3_bucket}/exp", "--subsets", "none,all")
    first = sweep(args, s3_env)
    assert f"experiment {experiment}: 2 finished" in first.stdout
    assert "no finished trial for subset(s) text, face, prosody, text+face" in first.stdout
    # The embedded data went to the local cache dir, not to the bucket nor to a local "s3:" dir.
    assert (tmp_path / "omnimer-cache" / "embedded" / "shards" / "dataset.json").is_file()
    assert not (REPO / "s3:").exists()

    def objects() -> set[str]:
        filesystem, prefix = storage.resolve(experiment)
        listing = filesystem.get_file_info(pafs.FileSelector(prefix, recursive=True))
        return {i.path.removeprefix(prefix + "/") for i in listing if i.type == pafs.FileType.File}

    stored = objects()
    assert {"sweep.json", "invocations.json", "tuner.pkl"} <= stored
    run_names = {o.split("/")[1] for o in stored if o.startswith("runs/")}
    assert run_names == {"none-seed0", "text+face+prosody-seed0"}
    for name in run_names:
        assert f"runs/{name}/record.json" in stored
        assert any(o.startswith(f"runs/{name}/tensorboard/events.out.tfevents.") for o in stored), name
        assert f"runs/{name}/best_adapter/adapter_model.safetensors" in stored
        assert any(o.startswith(f"runs/{name}/checkpoint_") for o in stored), name
    trials = {o.split("/")[0] for o in stored if o.startswith("train_driver_")}
    assert len(trials) == 2
    runs = {p: storage.read_text(p) for p in storage.find_files(experiment, "record.json")}
    assert len(runs) == 2 and all(json.loads(r)["status"] == "finished" for r in runs.values())

    again = sweep(args, s3_env)
    assert "2 finished" in again.stdout and f"resuming {experiment}" in again.stderr
    # nothing ran again: every record is byte-for-byte the same, and no trial was added
    assert {p: storage.read_text(p) for p in storage.find_files(experiment, "record.json")} == runs
    assert {o.split("/")[0] for o in objects() if o.startswith("train_driver_")} == trials
    assert len(storage.read_json(storage.join(experiment, "invocations.json"))) == 2

    table = subprocess.run(
        [sys.executable, "-m", "analysis", "tables", experiment, "--table", "ablation"],
        env=s3_env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert table.returncode == 0, table.stderr[-3000:]
    rows = [line for line in table.stdout.splitlines() if line.startswith(("| ✗", "| ✓"))]
    # n = 1 finished and 0 failed for the two cells that ran, n = 0 for the others
    counts = [row.split(" | ")[3:5] for row in rows]
    assert counts == [["1", "0"], *[["0", "0"]] * 6, ["1", "0"]]
