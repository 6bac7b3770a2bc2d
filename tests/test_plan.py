"""``--plan``'s projection from a probe's measurements (omnimer.sweep.plan), without Ray: the cells'
costs by their tokens, a trial's time, the memory of each layout, which layouts fit, and planned vs
actual. The probe itself runs end to end in tests/test_sweeps_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnimer.config import TrainConfig
from omnimer.sweep.plan import (
    PLAN_FILE,
    Cluster,
    Layout,
    cell_factors,
    describe,
    fastest_runs_per_trial,
    memory_per_device,
    planned_vs_actual,
    project,
    trial_seconds,
)
from omnimer.sweep.request import plan_sweep

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
COUNTS = {"train": 80, "valid": 10, "test": 10}


def gpu_request(tmp_path, *overrides):
    return plan_sweep(
        mode="ablation",
        name="p",
        storage_path=str(tmp_path),
        config=str(REPO / "sweeps" / "configs" / "demo.yaml"),
        seeds="0,1",
        overrides=["train.use_gpu=true", "train.num_workers=2", "train.epochs=2", "train.cpus_per_worker=1"]
        + list(overrides),
    )


def probe(peak_gib: float = 30.0) -> dict:
    return {
        "device": "cuda:0",
        "steps": 4,
        "seconds_per_step": 2.0,
        "first_step_seconds": 9.0,
        "eval_seconds_per_clip": 0.5,
        "startup_seconds": 10.0,
        "setup_seconds": {"model": 5.0, "DeepSpeed": 3.0},
        "peak_memory_bytes": int(peak_gib * GIB),
        "memory_capacity_bytes": 40 * GIB,
        "param_bytes": 20 * GIB,
        "trainable_param_bytes": GIB // 10,
        "tokens_per_clip": {"main": 100.0, "text": 20.0, "face": 40.0, "prosody": 40.0},
    }


def test_a_cell_costs_the_all_aux_cell_scaled_by_its_tokens(tmp_path):
    factors = cell_factors(gpu_request(tmp_path), probe()["tokens_per_clip"])
    assert len(factors) == 16
    assert factors["none-seed0"] == pytest.approx(0.5) and factors["text-seed1"] == pytest.approx(0.6)
    assert factors["face+prosody-seed0"] == pytest.approx(0.9) and factors["text+face+prosody-seed1"] == 1.0


def test_a_trial_is_its_start_up_then_each_epochs_steps_and_scoring(tmp_path):
    cfg = TrainConfig.from_dict(gpu_request(tmp_path).base)  # batch 4, 2 epochs
    # 80 clips on 2 workers: 10 steps of 2 s; 5 + 5 clips scored per worker at 0.5 s; twice; + 10 s.
    assert trial_seconds(cfg, probe(), COUNTS, 2, [1.0]) == pytest.approx(10 + 2 * (20 + 5))
    assert trial_seconds(cfg, probe(), COUNTS, 1, [0.5]) == pytest.approx(10 + 2 * (20 * 2 * 0.5 + 10))
    # Two runs in one trial: the start-up once, the second run's set-up (model 5 s + DeepSpeed 3 s).
    assert trial_seconds(cfg, probe(), COUNTS, 2, [1.0, 1.0]) == pytest.approx(10 + 8 + 2 * 2 * (20 + 5))


def test_a_runs_first_scoring_costs_the_probes_cold_rate_and_the_later_ones_its_warm_rate(tmp_path):
    """The probe scores its clips twice: the first time also extracts their audio features, which a
    run's later epochs find cached. A plan from before (one rate) scores every epoch at that rate."""
    cfg = TrainConfig.from_dict(gpu_request(tmp_path).base)  # batch 4, 2 epochs
    cold = probe() | {"first_eval_seconds_per_clip": 2.0}
    # 10 steps of 2 s per epoch; 5 + 5 clips per worker scored at 2 s in epoch 1, at 0.5 s in epoch 2.
    assert trial_seconds(cfg, cold, COUNTS, 2, [1.0]) == pytest.approx(10 + 2 * 20 + 10 * 2.0 + 10 * 0.5)
    assert "scoring 0.500 s per clip (first 2.000)" in describe_probe(tmp_path, cold)
    assert "s per clip (first" not in describe_probe(tmp_path, probe())


def test_a_trials_later_runs_cost_the_probes_second_set_up(tmp_path):
    """The probe sets up a second time, as a trial's later run does (no imports, the model already
    staged): each later run costs that. A plan from before charges them the probe's first set-up."""
    cfg = TrainConfig.from_dict(gpu_request(tmp_path).base)  # batch 4, 2 epochs
    measured = probe() | {"later_setup_seconds": 1.5}
    # The start-up 10 s, two runs of 2 × (20 + 5) s, and the second's set-up 1.5 s (not 5 + 3 s).
    assert trial_seconds(cfg, measured, COUNTS, 2, [1.0, 1.0]) == pytest.approx(10 + 1.5 + 2 * 2 * (20 + 5))
    assert trial_seconds(cfg, measured, COUNTS, 2, [1.0]) == trial_seconds(cfg, probe(), COUNTS, 2, [1.0])
    assert "each further run of a trial sets up again in 1.5 s" in describe_probe(tmp_path, measured)
    assert "sets up again in 8.0 s" in describe_probe(tmp_path, probe())


def describe_probe(tmp_path, measured: dict) -> str:
    plan = project(gpu_request(tmp_path), measured, COUNTS, Cluster(8, 64, 0.125, 1.0), Layout(2, 2))
    return describe(plan | {"probe": measured, "epochs": 2, "clips": COUNTS, "layout": {"use_gpu": True}})


def test_zero3_partitions_the_weights_and_zero2_keeps_them_whole():
    measured = Layout(2, 2)
    assert memory_per_device(probe(), measured, Layout(8, 2)) == 30 * GIB
    assert memory_per_device(probe(), measured, Layout(8, 3)) == int(12.5 * GIB)
    assert memory_per_device(probe(), Layout(4, 3), Layout(1, 2)) == 45 * GIB


def test_layouts_that_do_not_fit_are_left_out_and_the_measured_one_is_kept(tmp_path):
    request = gpu_request(tmp_path)
    cluster = Cluster(gpus=8, cpus=64, driver_cpus=0.125, data_cpus=1.0)
    plan = project(request, probe(peak_gib=38.0), COUNTS, cluster, Layout(2, 2))
    layouts = {(r["workers"], r["zero_stage"]): r for r in plan["layouts"]}
    assert plan["trials"] == 16
    # 38 GiB > 0.9 × 40: every ZeRO-2 layout but the measured one is out; ZeRO-3 with 1 worker too.
    assert set(layouts) == {(2, 2), (2, 3), (4, 3), (8, 3)}
    measured = layouts[(2, 2)]
    assert measured["measured"] and not measured["fits"]
    assert measured["concurrent_trials"] == 4 and measured["rounds"] == 4
    assert layouts[(8, 3)]["concurrent_trials"] == 1 and layouts[(8, 3)]["rounds"] == 16
    times = measured["trial_seconds"]
    assert times["text+face+prosody-seed0"] == pytest.approx(60.0)
    assert measured["wall_seconds"] == pytest.approx(sum(times.values()) / 4)
    assert measured["device_hours"] == pytest.approx(sum(times.values()) * 2 / 3600)
    text = describe(plan | {"probe": probe(38.0), "epochs": 2, "clips": COUNTS, "layout": {"use_gpu": True}})
    assert "plan of 16 run(s) in 16 trial(s) of up to 1, 2 epochs each, on 80 training clips" in text
    assert "tokens per clip: main 100, text 20, face 40, prosody 40" in text
    assert "<- the config's layout (measured)" in text and "GPU-hours" in text


def test_a_sweep_compares_its_invocation_with_the_plan(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    assert planned_vs_actual(str(experiment), 1, []) is None
    plan = {
        "created": 0.0,
        "trials": 2,
        "layouts": [{"measured": True, "wall_seconds": 600.0, "trial_seconds": {"a": 100.0, "b": 300.0}}],
    }
    (experiment / PLAN_FILE).write_text(json.dumps(plan))
    (experiment / "invocations.json").write_text(json.dumps([{"invocation": 1, "wall_seconds": 720.0}]))
    records = [
        {"config": {"run": {"name": "a"}}, "wall_seconds": 150.0, "sweep": {"invocation": 1}},
        {"config": {"run": {"name": "b"}}, "wall_seconds": 250.0, "sweep": {"invocation": 1}},
        {"config": {"run": {"name": "c"}}, "wall_seconds": 999.0, "sweep": {"invocation": 0}},
    ]
    text = planned_vs_actual(str(experiment), 1, records)
    assert "sweep wall: planned 10.0 min for 2 trial(s); invocation 1: 12.0 min for 2 run(s)" in text
    assert "mean trial: planned 200 s, actual 200 s (2 trial(s))" in text


def demo_on_two_cpus(tmp_path, runs_per_trial: int):
    """The demo's config, cells none and all × seeds 0 and 1, projected on 2 CPUs from a CPU probe."""
    request = plan_sweep(
        mode="ablation",
        name="p",
        storage_path=str(tmp_path),
        config=str(REPO / "sweeps" / "configs" / "demo.yaml"),
        seeds="0,1",
        subsets="none,all",
        runs_per_trial=runs_per_trial,
    )
    cpu_probe = probe(peak_gib=1.0) | {"device": "cpu", "memory_capacity_bytes": 16 * GIB, "param_bytes": 0}
    cluster = Cluster(gpus=0, cpus=2, driver_cpus=0.125, data_cpus=1.0)
    return request, cpu_probe, project(request, cpu_probe, COUNTS, cluster, Layout(1, 2))


def test_cpu_trials_side_by_side_share_the_cores(tmp_path):
    """The demo's layout on 2 CPUs: 4 trials at once (0.125 + 0.125 CPU each, one CPU kept for Ray
    Data), each worker computing with one thread: every trial runs at half speed."""
    request, cpu_probe, plan = demo_on_two_cpus(tmp_path, 1)
    measured = next(r for r in plan["layouts"] if r["measured"])
    assert measured["concurrent_trials"] == 4 and measured["cpu_contention"] == 2.0
    cfg = TrainConfig.from_dict(request.base)
    alone = trial_seconds(cfg, cpu_probe, COUNTS, 1, [1.0])
    assert measured["trial_seconds"]["text+face+prosody-seed0"] == pytest.approx(2 * alone)
    assert measured["wall_seconds"] == pytest.approx(
        max(sum(measured["trial_seconds"].values()) / 4, 2 * alone)
    )
    # 2 workers per trial: 2 trials at once (0.375 CPU each), 4 threads on 2 CPUs
    two = next(r for r in plan["layouts"] if r["workers"] == 2 and r["zero_stage"] == 2)
    assert two["concurrent_trials"] == 2 and two["cpu_contention"] == 2.0


def test_runs_grouped_per_trial_pay_the_start_up_once_and_the_plan_names_the_fastest_grouping(tmp_path):
    """The demo's layout on 2 CPUs, 2 cells × 2 seeds: grouped seed-major 2 per trial, 2 trials run at
    once (each worker a core to itself), each paying the start-up once and a second run's set-up; of 1,
    2 and 4 runs per trial, the plan names the one with the shortest wall time."""
    request, cpu_probe, plan = demo_on_two_cpus(tmp_path, 2)
    assert plan["runs"] == 4 and plan["trials"] == 2 and plan["runs_per_trial"] == 2
    assert plan["groups"] == {
        "group-none-seed0": ["none-seed0", "text+face+prosody-seed0"],
        "group-none-seed1": ["none-seed1", "text+face+prosody-seed1"],
    }
    measured = next(r for r in plan["layouts"] if r["measured"])
    assert measured["cpu_contention"] == 1.0  # 2 trials, 2 threads, 2 CPUs
    cfg = TrainConfig.from_dict(request.base)
    factors = cell_factors(request, cpu_probe["tokens_per_clip"])
    pair = trial_seconds(cfg, cpu_probe, COUNTS, 1, [factors["none-seed0"], 1.0])
    assert measured["trial_seconds"]["group-none-seed0"] == pytest.approx(pair)
    assert measured["wall_seconds"] == pytest.approx(pair)
    walls = plan["runs_per_trial_walls"]
    assert set(walls) == {"1", "2", "4"} and walls["2"] == pytest.approx(pair)
    assert walls["1"] > walls["2"]  # 4 trials at once on 2 CPUs, each paying the start-up
    fastest = min(walls, key=lambda k: (walls[k], int(k)))
    text = describe(plan | {"probe": cpu_probe, "epochs": 2, "clips": COUNTS, "layout": {"use_gpu": False}})
    assert "plan of 4 run(s) in 2 trial(s) of up to 2" in text
    assert (
        f"; fastest: --runs-per-trial {fastest}" in text
        and "runs per trial, the config's layout: 1 → " in text
    )


def test_auto_runs_per_trial_projects_the_sweep_at_the_fastest(tmp_path):
    """``--runs-per-trial auto`` (``choose``): the plan of the demo's 2 cells × 2 seeds on 2 CPUs is
    made at 2 runs per trial, the fastest of 1, 2 and 4 (2 trials, a core each, one start-up each),
    whatever the request said, and says that it took it."""
    request, cpu_probe, asked = demo_on_two_cpus(tmp_path, 1)
    cluster = Cluster(gpus=0, cpus=2, driver_cpus=0.125, data_cpus=1.0)
    plan = project(request, cpu_probe, COUNTS, cluster, Layout(1, 2), choose=True)
    walls = plan["runs_per_trial_walls"]
    assert walls == asked["runs_per_trial_walls"] and fastest_runs_per_trial(walls) == 2
    assert asked["runs_per_trial"] == 1 and not asked["runs_per_trial_chosen"]
    assert plan["runs_per_trial"] == 2 and plan["trials"] == 2 and plan["runs_per_trial_chosen"]
    measured = next(r for r in plan["layouts"] if r["measured"])
    assert measured["wall_seconds"] == pytest.approx(walls["2"])
    assert set(measured["trial_seconds"]) == set(plan["groups"]) == {"group-none-seed0", "group-none-seed1"}
    text = describe(plan | {"probe": cpu_probe, "epochs": 2, "clips": COUNTS, "layout": {"use_gpu": False}})
    assert "; fastest: --runs-per-trial 2 (taken: --runs-per-trial auto)" in text
    # Of equal walls, the fewest runs per trial.
    assert fastest_runs_per_trial({"1": 5.0, "2": 3.0, "4": 3.0}) == 2
