"""What a sweep makes of its trials' records, without Ray: ``--best-of`` (the best search trial, as the
analysis ranks it), and the settling of each run's record when its run or its trial ends (locally and
in a bucket)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recordfiles import make_record  # noqa: E402
from recordfiles import write_record as write_analysis_record  # noqa: E402
from sweepfiles import base_values  # noqa: E402

from omnimer import storage  # noqa: E402
from omnimer.config import TrainConfig  # noqa: E402
from omnimer.subsets import LATTICE  # noqa: E402
from omnimer.sweep.request import SweepError, merge_best  # noqa: E402
from omnimer.sweep.tuner import run_records, settle_records  # noqa: E402
from omnimer.training.record import STATE_FILE, RunState, Status, finish_run_dir, settle_run_dir  # noqa: E402
from sweeps import aux_ablation as sweep  # noqa: E402


def search_experiment(exp: Path) -> Path:
    """Three search trials (records as a sweep writes them): one finished, one failed with the best
    valid score (a failed trial is never picked), one early-stopped with the best usable score."""
    trials = (
        ("a", "finished", 0.30, 0.001, 16),
        ("b", "failed", 0.90, 0.01, 64),
        ("c", "stopped", 0.35, 0.002, 32),
    )
    for name, status, valid_f1, lr, rank in trials:
        overrides = {"train.lr": lr, "model.lora.rank": rank, "model.lora.alpha": 2.0 * rank}
        record = make_record(LATTICE[-1], 0, valid_f1 - 0.01, mode="search", overrides=overrides)
        record["valid"]["macro_f1"] = valid_f1
        record["status"] = status
        write_analysis_record(exp, f"trial-{name}", record)
    return exp


def test_best_of_takes_the_best_finished_trial_of_a_search_as_the_analysis_ranks_them(tmp_path):
    best = sweep.best_of(search_experiment(tmp_path / "search"))
    assert best["train"]["lr"] == 0.002 and best["model"]["lora"]["rank"] == 32
    merged = merge_best(base_values(), {**best, "loss": {"aux_weight_text": 0.0}}, "ablation")
    assert merged["loss"]["aux_weight_text"] == 0.3  # the grid, not the best trial, turns tasks off
    assert TrainConfig.from_dict(merged).model.lora.rank == 32
    # The same as the analysis report's best_config.yaml.
    report = tmp_path / "report"
    from analysis.report import analyse, write_report

    write_report(analyse([tmp_path / "search"]), report)
    assert sweep.best_of(report / "best_config.yaml") == best


def test_best_of_reads_the_analysis_yaml_and_refuses_an_empty_search(tmp_path):
    snippet = tmp_path / "best_config.yaml"
    snippet.write_text(
        yaml.safe_dump({"model": {"lora": {"rank": 4}}, "train": {"lr": 0.01}, "run": {"name": "z"}})
    )
    assert sweep.best_of(snippet) == {"model": {"lora": {"rank": 4}}, "train": {"lr": 0.01}}
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match=r"--best-of .*empty: .*no record.json under this dir"):
        sweep.best_of(tmp_path / "empty")
    failed = make_record(LATTICE[-1], 0, 0.0, status="failed", mode="search")
    write_analysis_record(tmp_path / "failed", "trial-x", failed)
    with pytest.raises(SweepError, match=r"no finished search trial with valid metrics"):
        sweep.best_of(tmp_path / "failed")
    with pytest.raises(SweepError, match=r"no such file or experiment dir"):
        sweep.best_of(tmp_path / "missing")


def write_state_checkpoints(run_dir, history: list[dict]) -> None:
    """Two Ray checkpoints of a run, after epoch 1 and after epoch 2, each with its run state."""
    for stamp, epochs in (("2026-01-01_00-00-01", 1), ("2026-01-01_00-00-02", 2)):
        state = {"history": history[:epochs], "best_epoch": epochs, "device_seconds": 2.0 * epochs}
        storage.write_json(storage.join(run_dir, f"checkpoint_{stamp}", STATE_FILE), state)


def test_settling_takes_the_newest_checkpoint_and_keeps_ended_records(tmp_path):
    run = tmp_path / "trial-1"
    history = [{"epoch": e, "valid": {"macro_f1": 0.1 * e}, "test": None, "seconds": 1.0} for e in (1, 2)]
    write_state_checkpoints(run, history)
    record = make_record(LATTICE[0], 0, 0.3, status="failed", mode="search")
    (run / "record.json").write_text(json.dumps(record))
    assert settle_run_dir(run, Status.STOPPED).status == Status.FAILED  # only `running` is settled
    record.update(status="running")
    del record["error"]
    (run / "record.json").write_text(json.dumps(record))
    settled = settle_run_dir(run, Status.STOPPED)
    written = json.loads((run / "record.json").read_text())
    assert written == settled.to_json()
    assert written["status"] == "stopped" and "error" not in written
    assert (written["best_epoch"], written["device_seconds"], len(written["epochs"])) == (2, 4.0, 2)
    assert written["config"] == record["config"] and written["sweep"] == record["sweep"]
    record.update(status="finished")
    (run / "record.json").write_text(json.dumps(record))
    assert settle_run_dir(run, Status.FAILED, "late").status == Status.FINISHED
    assert settle_run_dir(tmp_path / "absent", Status.FAILED) is None


def test_rank_zero_finishes_its_runs_record_and_refuses_a_run_without_one(tmp_path):
    """At a run's end rank 0 settles the driver's ``running`` record as finished with the run's final
    state; a run dir whose driver wrote no record is refused, saying so. A record that already
    finished keeps its ending whole, set-up times included (a worker group restarted after rank 0
    finished the run finishes it again)."""
    run = tmp_path / "none-seed0"
    history = [{"epoch": e, "valid": {"macro_f1": 0.1 * e}, "test": None, "seconds": 1.0} for e in (1, 2)]
    setup = [{"model": 0.2, "data": 0.1, "DeepSpeed": 0.4}]
    state = RunState.from_json({"history": history, "best_epoch": 2, "device_seconds": 2.0, "setup": setup})
    with pytest.raises(FileNotFoundError, match=r"none-seed0/record.json: the run's driver writes it before"):
        finish_run_dir(run, state, 12.0)
    assert not run.exists()  # nothing written for a refused run
    record = make_record(LATTICE[0], 0, 0.3, status="failed")
    record.update(status="running")
    del record["error"]
    run.mkdir()
    (run / "record.json").write_text(json.dumps(record))
    finished = finish_run_dir(run, state, 12.0)
    written = json.loads((run / "record.json").read_text())
    assert written == finished.to_json() and written["status"] == "finished"
    assert (written["best_epoch"], written["wall_seconds"], len(written["epochs"])) == (2, 12.0, 2)
    assert written["setup_seconds"] == setup
    again = finish_run_dir(run, state.started({"model": 0.3}), 30.0)
    assert json.loads((run / "record.json").read_text()) == again.to_json() == written


def test_a_sweep_settles_the_runs_in_a_bucket(s3_bucket):
    runs = f"s3://{s3_bucket}/exp/runs"
    history = [{"epoch": e, "valid": {"macro_f1": 0.1 * e}, "test": {"macro_f1": 0.2}} for e in (1, 2)]
    write_state_checkpoints(storage.join(runs, "none-seed0"), history)
    record = make_record(LATTICE[0], 0, 0.3, status="failed")
    record.update(status="running")
    del record["error"]
    storage.write_json(storage.join(runs, "none-seed0", "record.json"), record)
    assert run_records(runs) == [f"{runs}/none-seed0/record.json"]
    assert settle_records([], runs, "ablation") == {"failed": 1}
    closed = storage.read_json(storage.join(runs, "none-seed0", "record.json"))
    assert (closed["status"], closed["best_epoch"], len(closed["epochs"])) == ("failed", 2, 2)
    assert closed["error"] == "the trial ended before its run finished"
    assert settle_run_dir(storage.join(runs, "absent"), Status.FAILED) is None
