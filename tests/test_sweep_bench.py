"""The sweep bench's efficiency figures from a sweep's records and invocations.json (no Ray), and its
per-process CPU accounting on real processes."""

from __future__ import annotations

import json
import sys

import pytest
from bench.process_cpu import ProcessCPU, process_kind, run_sampled
from bench.sweep_bench import bench_sweep, sweep_efficiency

FIRST = {"model staging": 1.0, "model": 2.0, "data": 3.0, "DeepSpeed": 4.0}


def write_sweep(exp, setups) -> None:
    exp.mkdir()
    (exp / "invocations.json").write_text(json.dumps([{"wall_seconds": 100.0, "slots": 2}]))
    for i, setup in enumerate(setups):
        record = {
            "status": "finished",
            "wall_seconds": 60.0,
            "epochs": [{"seconds": 20.0}, {"seconds": 20.0 + 10 * i}],
        }
        if setup is not None:
            record["setup_seconds"] = setup
        (exp / "runs" / f"t{i}").mkdir(parents=True)
        (exp / "runs" / f"t{i}" / "record.json").write_text(json.dumps(record))


def test_start_up_is_split_into_the_workers_set_up_and_the_rest(tmp_path, capsys):
    exp = tmp_path / "exp"
    write_sweep(exp, [[FIRST], [{**FIRST, "data": 5.0}, {"model staging": 0.0}]])
    e = sweep_efficiency(exp)
    assert e["occupancy"] == pytest.approx(120 / 200) and "useful" not in e
    assert e["startup_mean"] == pytest.approx(15.0)
    # the first start of each trial only: a restart's set-up is not part of the start-up
    assert e["setup"] == pytest.approx({"model staging": 1.0, "model": 2.0, "data": 4.0, "DeepSpeed": 4.0})
    bench_sweep(exp)
    out = capsys.readouterr().out
    assert "of which the workers' set-up: model staging 1.0 s, model 2.0 s, data 4.0 s" in out
    assert "the rest 4.0 s (Ray's actors" in out


def test_the_useful_share_counts_each_trials_epochs_as_they_run_alone(tmp_path, capsys):
    """Trial t1's epochs took 50 s in the sweep and 25 s alone: every trial ran 2× slower, so the
    sweep's 40 + 50 s of epochs are 45 s alone, on 2 CPUs for 100 s."""
    exp = tmp_path / "exp"
    write_sweep(exp, [[FIRST], [FIRST]])
    epochs = [{"seconds": 10.0}, {"seconds": 15.0}]
    alone_record = {"wall_seconds": 35.0, "epochs": epochs, "setup_seconds": [FIRST]}
    kinds = {"ray::RayTrainWorker": (1, 33.0), "ray::TrainController": (1, 4.0)}
    cost = ProcessCPU(wall=40.0, busy=70.0, kinds=kinds)
    alone = {"name": "t1", "record": alone_record, "cost": cost}
    e = sweep_efficiency(exp, alone, cpus=2)
    assert e["slowdown"] == pytest.approx(2.0) and e["useful"] == pytest.approx(45 / 200)
    assert e["alone_startup"] == pytest.approx(10.0)
    bench_sweep(exp, alone, cpus=2)
    out = capsys.readouterr().out
    assert "calibration: t1 alone on this machine, epochs 25.0 s; in the sweep 2.00× that" in out
    assert "these records predate cpu_seconds" in out
    assert "useful share    Σ epoch time alone / (wall × 2 CPUs) :  0.225 (goal >= 0.8)" in out
    assert "per-run start-up alone (a trial of one run)           :   10.0 s" in out
    assert "33.0 CPU-s    1 process(es)  ray::RayTrainWorker" in out
    with pytest.raises(ValueError, match="its trial t9 did not finish: no calibration"):
        sweep_efficiency(exp, {**alone, "name": "t9"}, cpus=2)


def test_each_run_alone_is_the_cpu_its_worker_spent_at_the_calibration_runs_pace(tmp_path, capsys):
    """With ``cpu_seconds`` in the records: run t0's worker computed 16 CPU-s of its 40 s of epochs
    in the sweep, t1's 20 of 50; alone, t1 took 25 s for 20 CPU-s (1.25 s per CPU-s, its other
    threads included): the runs' epochs alone are 20 + 25 s, on 2 CPUs for 100 s, whatever the
    machine's speed when the calibration ran (here it ran as fast as in the sweep: wall 2.00×)."""
    exp = tmp_path / "exp"
    write_sweep(exp, [[FIRST], [FIRST]])
    for name, cpu in (("t0", [8.0, 8.0]), ("t1", [8.0, 12.0])):
        path = exp / "runs" / name / "record.json"
        record = json.loads(path.read_text())
        record["epochs"] = [e | {"cpu_seconds": c} for e, c in zip(record["epochs"], cpu, strict=True)]
        path.write_text(json.dumps(record))
    epochs = [{"seconds": 10.0, "cpu_seconds": 8.0}, {"seconds": 15.0, "cpu_seconds": 12.0}]
    alone = {
        "name": "t1",
        "record": {"wall_seconds": 35.0, "epochs": epochs},
        "cost": ProcessCPU(40.0, 70.0, {}),
    }
    e = sweep_efficiency(exp, alone, cpus=2)
    assert e["wall_per_cpu"] == pytest.approx(1.25) and e["useful"] == pytest.approx(45 / 200)
    assert e["slowdown"] == pytest.approx(90 / 45) and e["same_run_slowdown"] == pytest.approx(2.0)
    # The machine twice as fast when the calibration ran: the wall clocks say 4×, the CPU still 2×.
    fast = [{"seconds": 5.0, "cpu_seconds": 4.0}, {"seconds": 7.5, "cpu_seconds": 6.0}]
    e = sweep_efficiency(exp, {**alone, "record": {"wall_seconds": 20.0, "epochs": fast}}, cpus=2)
    assert e["same_run_slowdown"] == pytest.approx(4.0) and e["useful"] == pytest.approx(45 / 200)
    bench_sweep(exp, alone, cpus=2)
    out = capsys.readouterr().out
    assert (
        "calibration: t1 alone on this machine, epochs 25.0 s for 20.0 CPU-s of its worker (1.25 s per CPU-s)"
        in out
    )
    assert (
        "useful share    Σ epoch time alone / (wall × 2 CPUs) :  0.225 (goal >= 0.8)   "
        "(each run's epochs alone = its " in out
    )
    assert "in the sweep they took 2.00× that" in out and "t1's epochs took 2.00× as long in the sweep" in out
    # A record of the sweep without cpu_seconds (from before): back to the wall clocks.
    (exp / "runs" / "t0" / "record.json").write_text(
        json.dumps(
            {
                **json.loads((exp / "runs" / "t0" / "record.json").read_text()),
                "epochs": [{"seconds": 20.0}, {"seconds": 20.0}],
            }
        )
    )
    assert sweep_efficiency(exp, alone, cpus=2)["wall_per_cpu"] is None


def test_records_without_setup_seconds_say_so(tmp_path, capsys):
    exp = tmp_path / "exp"
    write_sweep(exp, [None])
    bench_sweep(exp)
    assert "these records predate setup_seconds" in capsys.readouterr().out


def test_process_kinds_name_ray_actors_by_class():
    assert process_kind(["ray::ImplicitFunc.train", ""]) == "ray::ImplicitFunc"
    assert process_kind(["/x/bin/raylet", "--node"]) == "raylet"
    assert process_kind(["/x/bin/python", "sweeps/aux_ablation.py", "--mode"]) == "python aux_ablation.py"


def test_the_cpu_of_a_child_that_computes_is_counted():
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\ntime.sleep(0.5)"
    code, cost = run_sampled([sys.executable, "-c", burn], interval=0.1)
    assert code == 0
    n, cpu = cost.kinds[f"{sys.executable.rsplit('/', 1)[1]} -c"]
    assert n == 1 and 0.9 <= cpu <= 2.0 and cost.busy >= 0.9


def test_a_sweep_of_fewer_trials_than_slots_is_occupied_by_the_trials_it_has(tmp_path, capsys):
    """Two runs in one trial (--runs-per-trial 2) on 2 slots: one trial at once, busy 120 s of 100."""
    exp = tmp_path / "exp"
    write_sweep(exp, [[FIRST], [FIRST]])
    (exp / "sweep.json").write_text(json.dumps({"runs_per_trial": 2}))
    e = sweep_efficiency(exp)
    assert (e["runs"], e["trials"], e["at_once"]) == (2, 1, 1) and e["occupancy"] == pytest.approx(1.2)
    bench_sweep(exp)
    assert (
        "(2 runs in 1 trial(s) of up to 2, 1 at once, wall 100 s over 1 invocation(s))"
        in capsys.readouterr().out
    )
