"""The cluster path of sweeps/aux_ablation.py end to end: `ray start --head` + `ray job submit
--working-dir` on loopback, and the same job resubmitted after the cluster restarts.

Each head gets ports and a temp dir of its own (a new Ray session unpacks the job's working dir
elsewhere, as on a new cluster), token auth as on a real cluster, and is stopped by the test.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sweepfiles import smoke_ablation, trial_dirs

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What a job ships: cluster/runtime_env.yaml's excludes (its env_vars name cluster paths).
EXCLUDES = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())["excludes"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What `ray job` prints when its request got no answer: the head's job agent is not up yet, or the
# dashboard closed the connection (CI saw `RemoteDisconnected` once, submitting to the second head; the
# dashboard restarts a module that fails its health check and drops the requests it held). Such a
# request is tried again.
TRANSIENT = (
    "No available agent to submit job",
    "RemoteDisconnected",
    "ConnectionError",
    "Connection refused",
)
ENDED = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}


class Head:
    """A running Ray head: its dashboard address and the jobs submitted to it."""

    def __init__(self, process: subprocess.Popen, dashboard: int, env: dict, log: Path, temp: Path):
        self.process, self.dashboard, self.env, self.log, self.temp = process, dashboard, env, log, temp

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    def job(self, command: str, *args: str, timeout: float = 120) -> tuple[int, str]:
        """``ray job COMMAND ARGS`` against this head, tried again while the request gets no answer
        (for up to a minute); returns its exit code and output."""
        for _ in range(30):
            job = subprocess.run(
                [str(BIN / "ray"), "job", command, f"--address={self.address}", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.log.parent,
            )
            output = job.stdout + job.stderr
            if job.returncode == 0 or not any(sign in output for sign in TRANSIENT):
                break
            time.sleep(2)
        return job.returncode, output

    def submit(self, working_dir: Path, args: list[str], wait: bool = True) -> tuple[int, str, str]:
        """``ray job submit --no-wait`` of the sweep script, then (``wait``) the job's end; returns the
        exit code (0 only if the job was taken and, waited for, succeeded), the job's output (with
        ``wait``; else the submission's) and its submission id.

        The id is chosen here, so a submission tried again after its connection dropped cannot start
        the job twice: the head refuses an id it already has. The end is waited for with ``ray job logs
        --follow`` (again if its connection drops) and the output read once the job has ended."""
        submission = f"omr_{os.urandom(6).hex()}"
        code, output = self.job(
            "submit",
            f"--submission-id={submission}",
            "--working-dir",
            str(working_dir),
            "--runtime-env-json",
            json.dumps({"excludes": EXCLUDES}),
            "--no-wait",
            "--",
            "python",
            "sweeps/aux_ablation.py",
            *args,
        )
        if code != 0 and f"submission_id {submission} already exists" in output:
            code = 0  # an earlier try reached the head before its answer was lost
        if code != 0:  # the head's side of it first, for whoever reads the failure
            return code, f"{self.server_logs()}\n--- ray job submit:\n{output[-2500:]}", submission
        if not wait:
            return code, output, submission
        deadline = time.time() + 900
        while (state := self.state(submission)) not in ENDED.values():
            assert time.time() < deadline, f"job {submission} still {state} after 900 s"
            self.job("logs", "--follow", submission, timeout=max(deadline - time.time(), 1))
        code, logs = self.job("logs", submission)
        assert code == 0, logs[-3000:]
        return (0 if state == "SUCCEEDED" else 1), logs, submission

    @property
    def logs(self) -> Path:
        """The head's log directory."""
        return self.temp / "session_latest" / "logs"

    def server_logs(self, chars: int = 1000) -> str:
        """The ends of the head's dashboard, job module and agent logs (``chars`` of each)."""
        tails = []
        for name in ("dashboard.log", "dashboard_JobHead.log", "dashboard_agent.log"):
            path = self.logs / name
            text = path.read_text(errors="replace")[-chars:] if path.is_file() else "(absent)"
            tails.append(f"--- the head's {name}:\n{text}")
        return "\n".join(tails)

    def actor_logs(self, actor: str) -> list[Path]:
        """The head's log files of its ``actor`` processes (Ray heads each with ``:actor_name:``)."""
        header = f":actor_name:{actor}\n"
        return [p for p in self.logs.glob("worker-*.err") if header in p.read_text(errors="replace")]

    def status(self, submission: str) -> str:
        return self.job("status", submission)[1]

    def state(self, submission: str) -> str:
        """The job's status as Ray names it: SUCCEEDED, FAILED, STOPPED, or while it runs PENDING/RUNNING."""
        text = self.status(submission)
        for said, state in ENDED.items():
            if f"Job '{submission}' {said}" in text:
                return state
        found = re.search(rf"Status for job '{submission}': (\w+)", text)
        assert found, text[-3000:]
        return found.group(1)


@contextlib.contextmanager
def ray_head(env: dict, home: Path, name: str) -> Iterator[Head]:
    """``ray start --head --block`` on loopback with a temp dir of its own; stopped on exit (SIGTERM,
    then SIGKILL: the head's processes form one group. `ray stop` would stop every Ray on the machine,
    this test session's own included)."""
    # The job's `python` is the cluster's: here, the venv's (first on the head's PATH).
    head_env = dict(env, RAY_AUTH_MODE="token", HOME=str(home), PATH=f"{BIN}:{env['PATH']}")
    temp = tempfile.mkdtemp(prefix=f"omr-{name}-", dir="/tmp")  # short: Ray's socket paths are limited
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
    if not (home / ".ray" / "auth_token").is_file():  # token auth: the token goes to $HOME/.ray
        token = subprocess.run(
            [str(BIN / "ray"), "get-auth-token", "--generate"], env=head_env, capture_output=True, text=True
        )
        assert token.returncode == 0, token.stderr[-2000:]
    log_path = home / f"head-{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed with the head below
    process = subprocess.Popen(
        start, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_dashboard(dashboard, process, log_path)
        yield Head(process, dashboard, head_env, log_path, Path(temp))
    finally:
        stop_group(process)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


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


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Until ``pid`` has exited (a zombie waiting for its parent counts as gone)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.5)
    raise AssertionError(f"process {pid} is still alive {timeout:.0f} s after its Ray head stopped")


@pytest.fixture
def env():
    out = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    out.pop("RAY_ADDRESS", None)
    return out


def records(experiment: Path) -> dict[str, str]:
    """Each trial's record.json, as the bytes on disk."""
    return {p.parent.name: p.read_text() for p in sorted((experiment / "runs").glob("*/record.json"))}


def ablation(name: str, storage: Path, subsets: str, *overrides: str) -> list[str]:
    return smoke_ablation(name, str(storage), "--subsets", subsets, *overrides)


def shipped_copy(target: Path, change: str) -> Path:
    """The repository's code copied elsewhere, with one harmless line added to a module: the same
    request from a newer version of the code, in a working-dir package of another hash."""
    for item in ("omnimer", "sweeps", "analysis", "cluster", "pyproject.toml", "README.md"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / item)
    with open(target / "omnimer" / "__init__.py", "a") as module:
        module.write(f"# {change}\n")
    return target


def test_a_job_killed_part_way_resumes_on_a_new_head_and_a_finished_sweep_runs_nothing(env, tmp_path):
    """The first job's driver is killed after its first trial finished (one trial slot, so another is
    mid-run and one has not started) and its head stopped; the same job from a newer copy of the code
    on a new head (new session, new temp dir) finishes the sweep: each cell finished exactly once, the
    trial finished before the kill untouched. Submitted once more, the finished sweep starts no trial
    and leaves every record as it was; nothing in the experiment names a path into a session's unpacked
    working dir; the report says which invocation ran which trials. (One scenario, two heads: each
    head and each job costs a minute of start-up on 2 cores.)"""
    storage = tmp_path / "exp"
    # One trial at a time (0.125 driver + 0.5 worker of the 1 CPU left to trials): the kill lands
    # between trials.
    args = ablation("killed", storage, "none,text,all", "train.cpus_per_worker=0.5")
    experiment = storage / "killed"
    with ray_head(env, tmp_path, "first") as head:
        code, output, _ = head.submit(REPO, args, wait=False)
        assert code == 0, output[-6000:]
        deadline = time.time() + 600
        finished: dict[str, str] = {}
        while time.time() < deadline:
            finished = {n: r for n, r in records(experiment).items() if json.loads(r)["status"] == "finished"}
            if finished:
                break
            time.sleep(0.5)
        assert len(finished) == 1, f"no trial finished in time: {records(experiment)}"
        driver = json.loads((experiment / "invocations.json").read_text())[0]["pid"]
        os.kill(driver, signal.SIGKILL)  # the sweep's driver dies, as with a lost head node
    wait_gone(driver)
    assert len(records(experiment)) < 3 or any(
        json.loads(r)["status"] != "finished" for r in records(experiment).values()
    ), "the sweep finished before it could be killed"

    newer = shipped_copy(tmp_path / "checkout", "a newer commit")
    with ray_head(env, tmp_path, "second") as head:
        code, output, submission = head.submit(newer, args)
        assert code == 0, output[-6000:]
        assert f"Job '{submission}' succeeded" in head.status(submission)
        # omnimer came from the uploaded working dir, not from the checkout or site-packages.
        origin = next(line for line in output.splitlines() if "omnimer from" in line)
        assert "runtime_resources" in origin and str(REPO) not in origin
        assert f"resuming {experiment}" in output and "3 finished; invocation 2" in output
        # A head serves the state API, so each Train run keeps Ray Train's placement-group cleaner
        # (a local Ray has none: omnimer.training.trainer).
        assert head.actor_logs("PlacementGroupCleaner"), "no run of the job had a placement-group cleaner"
        after = {name: json.loads(text) for name, text in records(experiment).items()}
        assert set(after) == {"none-seed0", "text-seed0", "text+face+prosody-seed0"}
        assert {r["status"] for r in after.values()} == {"finished"}
        trials = trial_dirs(experiment)
        assert len(trials) == 3  # one Tune trial per cell: none was started twice
        (name, record), *_ = finished.items()
        assert records(experiment)[name] == record  # kept as it was, not trained again
        assert after[name]["sweep"]["invocation"] == 1
        assert all(r["sweep"]["invocation"] == 2 for n, r in after.items() if n != name)
        for run in after.values():
            assert len(run["epochs"]) == 2 and 0 <= run["test"]["macro_f1"] <= 1

        # The finished sweep, submitted again from the repository's own code (another package hash).
        before = records(experiment)
        code, output, _ = head.submit(REPO, args)
        assert code == 0, output[-6000:]
    assert "3 finished; invocation 3 (source " in output and ") ran 0 run(s)" in output
    assert records(experiment) == before and trial_dirs(experiment) == trials
    # sweep.json, records, Tune's state (JSON and pickles), checkpoints, events.
    for path in (p for p in experiment.rglob("*") if p.is_file()):
        assert b"_ray_pkg_" not in path.read_bytes(), f"{path} names a path into the job's working dir"
    assert json.loads((experiment / "sweep.json").read_text())["config_path"] == "sweeps/configs/smoke.yaml"
    invocations = json.loads((experiment / "invocations.json").read_text())
    assert [(i["invocation"], i["resumed"], i["wall_seconds"] is None) for i in invocations] == [
        (1, False, True),
        (2, True, False),
        (3, True, False),
    ]
    sources = [i["source_sha256"] for i in invocations]
    assert sources[0] == sources[2] != sources[1]
    assert all(i["git"]["sha"] is None for i in invocations)  # a job's working dir has no .git

    from analysis.__main__ import main as analysis_main

    assert analysis_main(["report", str(experiment), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Invocations" in text
    rows = [line for line in text.splitlines() if re.match(r"\| [123] \| \d{4}-", line)]
    assert len(rows) == 3
    assert f"| 1: `{name}` |" in rows[0] and "| 2: `" in rows[1] and rows[2].endswith("| 0: — |")
