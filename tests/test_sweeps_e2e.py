"""sweeps/aux_ablation.py end to end on a local CPU Ray: the smoke sweep in both modes, re-runs that
start nothing, a driver killed mid-sweep that resumes without losing or repeating a trial, the
cluster path (`ray start --head` + `ray job submit --working-dir .`) on loopback, and the smoke sweep
with its storage path in an S3 bucket (moto's S3 server on loopback)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

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


def trial_dirs(experiment: Path) -> list[str]:
    return sorted(p.name for p in experiment.glob("train_driver_*"))


def smoke_ablation(name: str, storage_path: str, *extra: str) -> list[str]:
    """The arguments of a smoke ablation sweep over seed 0."""
    return [
        "--mode",
        "ablation",
        "--smoke-test",
        "--seeds",
        "0",
        "--name",
        name,
        "--storage-path",
        storage_path,
        *extra,
    ]


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
    """The whole ablation grid (seed 0), its driver killed after two trials as a lost head node's
    would be, then resumed: each of the 8 cells finished once with its λ, the trials finished before
    the kill are untouched, and the sweep closes with the analysis package's table. (An uninterrupted
    ablation, its summary and its no-op re-run are the S3 test's; one 8-trial sweep here keeps the
    suite short.)"""
    args = smoke_ablation("killed", str(storage))
    experiment = storage / "killed"
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

    resumed = sweep(args, env)
    runs = records(experiment)
    assert len(runs) == 8 and {r["status"] for r in runs.values()} == {"finished"}
    assert len(trial_dirs(experiment)) == 8
    for name, record in finished.items():
        assert runs[name] == record  # kept as it was, not trained again
    assert len({tuple(r["sweep"]["subset"].values()) for r in runs.values()}) == 8
    for name, record in runs.items():
        assert record["sweep"]["experiment"] == "killed" and record["sweep"]["seed"] == 0
        assert record["config"]["run"]["name"] == name
        for task, enabled in record["sweep"]["subset"].items():
            assert (record["config"]["loss"][f"aux_weight_{task}"] > 0) is enabled
        assert len(record["epochs"]) == 2 and 0 <= record["test"]["macro_f1"] <= 1
        assert list((experiment / "runs" / name / "tensorboard").glob("events.out.tfevents.*"))
    assert "8 finished" in resumed.stdout
    # The closing summary is the analysis package's: the ablation table, then the Shapley lines.
    assert "Aux-task ablation of killed (emotion, test split; trials: 8 finished)" in resumed.stdout
    cell = re.compile(r"\| [✓✗] \| [✓✗] \| [✓✗] \| 1 \| 0 \|")
    rows = [line for line in resumed.stdout.splitlines() if cell.match(line)]
    assert len(rows) == 8 and rows[0].startswith("| ✗ | ✗ | ✗ |") and rows[-1].startswith("| ✓ | ✓ | ✓ |")
    assert re.search(r"^  prosody  Shapley [+-]\d\.\d{3}", resumed.stdout, re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ray_job_submit_runs_the_sweep_from_the_working_dir(storage, env, tmp_path):
    """The cluster path: the job gets the repo as its working dir and imports omnimer from there."""
    # The job's `python` is the cluster's: here, the venv's (first on the head's PATH).
    head_env = dict(env, RAY_AUTH_MODE="token", HOME=str(tmp_path), PATH=f"{BIN}:{env['PATH']}")
    temp = env["RAY_TMPDIR"]
    dashboard = free_port()
    start = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={free_port()}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        # Every per-node agent on a port of its own: another Ray on this machine (this test session's
        # own) holds the default ones, and a head whose job agent cannot bind never takes a job.
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=2",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
        "--block",
    ]
    # Token auth, as on a real cluster: the token goes to $HOME/.ray/auth_token (HOME is tmp_path).
    token = subprocess.run(
        [str(BIN / "ray"), "get-auth-token", "--generate"], env=head_env, capture_output=True, text=True
    )
    assert token.returncode == 0 and (tmp_path / ".ray" / "auth_token").is_file(), token.stderr[-2000:]
    # `--block` in a session of its own: the head's processes form one group, which the test stops
    # at the end. (`ray stop` would stop every Ray on the machine, this test session's own included.)
    head_log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed with the head below
    head = subprocess.Popen(
        start, env=head_env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_dashboard(dashboard, head, tmp_path / "head.log")
        runtime_env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
        runtime = {"excludes": runtime_env["excludes"]}
        submit = [
            str(BIN / "ray"),
            "job",
            "submit",
            f"--address=http://127.0.0.1:{dashboard}",
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            json.dumps(runtime),
            "--",
            "python",
            "sweeps/aux_ablation.py",
            "--mode",
            "search",
            "--smoke-test",
            "--num-samples",
            "1",
            "--name",
            "job",
            "--storage-path",
            str(storage),
        ]
        for _ in range(30):  # the head's job agent comes up a little after its dashboard
            job = subprocess.run(
                submit, env=head_env, capture_output=True, text=True, timeout=900, cwd=tmp_path
            )
            output = job.stdout + job.stderr
            if "No available agent to submit job" not in output:
                break
            time.sleep(2)
        assert job.returncode == 0, output[-6000:]
        submission = re.search(r"Job '(raysubmit_\w+)' submitted", output).group(1)
        status = subprocess.run(
            [str(BIN / "ray"), "job", "status", f"--address=http://127.0.0.1:{dashboard}", submission],
            env=head_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # The job reached SUCCEEDED (the CLI words it "succeeded").
        assert f"Job '{submission}' succeeded" in status.stdout + status.stderr, status.stdout + status.stderr
        # omnimer came from the uploaded working dir, not from the checkout or site-packages.
        origin = next(line for line in output.splitlines() if "omnimer from" in line)
        assert "runtime_resources" in origin and str(REPO) not in origin
        runs = records(storage / "job")
        assert len(runs) == 1 and next(iter(runs.values()))["status"] in ("finished", "stopped")
    finally:
        stop_group(head)
        head_log.close()


def wait_for_dashboard(port: int, head: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until the head's dashboard answers HTTP (any status: with token auth it may say 401)."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert head.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Ray head's dashboard did not come up: {log.read_text()[-3000:]}")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a process group started with start_new_session, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)


def test_ablation_smoke_on_s3_writes_every_output_to_the_bucket(s3_bucket, env, tmp_path):
    """``--storage-path s3://...``: Tune's state, sweep.json, timings.json and every trial's record,
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
    assert {"sweep.json", "timings.json", "tuner.pkl"} <= stored
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
    assert len(storage.read_json(storage.join(experiment, "timings.json"))) == 2

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
