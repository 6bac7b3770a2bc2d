"""A sweep without Ray (omnimer.sweep and sweeps/aux_ablation.py): the grid, the search space, trial
specs and configs, the request, every refusal that must happen before a trial starts, and the
terminal's lines. What a sweep makes of its trials' records: tests/test_sweep_results.py."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweepfiles import DEMO, base_values  # noqa: E402

from omnimer import storage  # noqa: E402
from omnimer.config import TrainConfig  # noqa: E402
from omnimer.subsets import LATTICE, TASKS, parse_subset, subset_name  # noqa: E402
from omnimer.sweep.embedded import embedded_root  # noqa: E402
from omnimer.sweep.invocations import INVOCATIONS_FILE, end_invocation, start_invocation  # noqa: E402
from omnimer.sweep.request import (  # noqa: E402
    SWEEP_FILE,
    SweepError,
    check_same_sweep,
    parse_seeds,
    parse_subsets,
)
from omnimer.sweep.search import search_space, study_file  # noqa: E402
from omnimer.sweep.trial import (  # noqa: E402
    TrialSpec,
    group_name,
    run_groups,
    search_overrides,
    trial_specs,
)
from omnimer.sweep.tuner import total_trials  # noqa: E402
from omnimer.training.driver import with_absolute_paths  # noqa: E402
from sweeps import aux_ablation as sweep  # noqa: E402


def params(mode="ablation", **extra) -> dict:
    out = {"base": base_values(), "mode": mode, "experiment": "exp", "runs_dir": "/tmp/exp/runs"}
    out.update(extra)
    return out


def test_the_grid_is_the_eight_subsets_from_none_to_all():
    assert sorted(LATTICE) == sorted(itertools.product((False, True), repeat=3))
    assert len({subset_name(s) for s in LATTICE}) == 8
    assert subset_name(LATTICE[0]) == "none"
    assert subset_name(LATTICE[-1]) == "text+face+prosody"
    assert [sum(s) for s in LATTICE] == [0, 1, 1, 1, 2, 2, 2, 3]
    assert [parse_subset(subset_name(s)) for s in LATTICE] == list(LATTICE)


def test_grouped_grid_trials_hold_consecutive_seed_major_runs_and_each_is_a_spec(tmp_path):
    cells = [list(LATTICE[0]), list(LATTICE[-1])]
    groups = run_groups(cells, [0, 1, 2], 4)
    assert [len(g) for g in groups] == [4, 2]
    assert groups[0] == [[cells[0], 0], [cells[1], 0], [cells[0], 1], [cells[1], 1]]
    specs = trial_specs(params(runs=groups[1], subset=None, seed=None), trial_id="t1", invocation=3)
    assert [s.run_name for s in specs] == ["none-seed2", "text+face+prosody-seed2"]
    assert {(s.trial_id, s.invocation) for s in specs} == {("t1", 3)}
    assert group_name([s.run_name for s in specs]) == "group-none-seed2"
    assert group_name(["none-seed2"]) == "none-seed2"  # one run: its Train run is its own dir
    # one run per trial, as Tune's grid of subset × seed hands it over
    (single,) = trial_specs(params(subset=list(LATTICE[1]), seed=5))
    assert single.run_name == f"{subset_name(LATTICE[1])}-seed5"
    # 8 cells × 2 seeds in groups of 3
    assert total_trials(request(plan_argv(str(tmp_path), "--runs-per-trial", "3"))) == 6


@pytest.mark.parametrize("subset", LATTICE, ids=subset_name)
def test_an_ablation_cell_zeroes_exactly_the_disabled_tasks(subset):
    spec = TrialSpec.from_tune(params(subset=list(subset), seed=3))
    cfg = spec.config()
    meta = spec.sweep_block(cfg)
    for task, enabled in zip(TASKS, subset, strict=True):
        weight = getattr(cfg.loss, f"aux_weight_{task}")
        assert weight == (0.3 if enabled else 0.0)
    assert cfg.train.seed == 3
    assert cfg.run.name == f"{subset_name(subset)}-seed3"
    assert cfg.run.output_dir == "/tmp/exp/runs"
    assert meta == {
        "experiment": "exp",
        "mode": "ablation",
        "trial_id": cfg.run.name,
        "seed": 3,
        "subset": dict(zip(TASKS, subset, strict=True)),
    }


def test_a_search_trial_sets_the_sampled_keys_and_alpha_from_the_ratio():
    sampled = {
        "model.lora.rank": 32,
        "lora_alpha_over_rank": 2,
        "train.lr": 0.001,
        "loss.aux_weight_text": 0.0,
        "loss.aux_weight_face": 0.7,
        "loss.aux_weight_prosody": 0.2,
        "loss.scheme": "focal",
        "loss.gamma": 3.5,
    }
    spec = TrialSpec.from_tune(params("search", **sampled, seed=0), trial_id="abc_00001")
    assert spec.search == sampled
    cfg = spec.config()
    meta = spec.sweep_block(cfg)
    assert (cfg.model.lora.rank, cfg.model.lora.alpha) == (32, 64.0)
    assert cfg.train.lr == 0.001
    assert (cfg.loss.scheme, cfg.loss.gamma) == ("focal", 3.5)
    assert cfg.run.name == "trial-abc_00001"
    assert meta["subset"] == {"text": False, "face": True, "prosody": True}


@pytest.mark.parametrize(
    ("scheme", "conditional"),
    [
        ("none", set()),
        ("focal", {"loss.gamma"}),
        ("effective_number", {"loss.beta"}),
        ("logit_adjust", {"loss.tau"}),
    ],
)
def test_the_search_space_suggests_a_scheme_parameter_only_for_its_scheme(scheme, conditional):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"loss.scheme": scheme})
    trial = study.ask()
    search_space(trial, base_lr=0.003)
    scheme_params = {"loss.gamma", "loss.beta", "loss.tau"} & set(trial.params)
    assert scheme_params == conditional
    assert trial.params["model.lora.rank"] in (4, 8, 16, 32, 64)
    assert 0.0003 <= trial.params["train.lr"] <= 0.03
    assert all(0 <= trial.params[f"loss.aux_weight_{t}"] <= 1 for t in TASKS)
    # Every sampled key but the alpha ratio is a config key: a trial config builds from them.
    values = search_overrides(base_values(), trial.params)
    TrainConfig.from_dict(values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"--seeds '' is empty: give a comma-separated list such as 0,1,2"),
        (" , ", r"is empty"),
        ("0,a", r"must be comma-separated integers"),
        ("1,1", r"repeats a seed"),
    ],
)
def test_bad_seed_lists_are_refused(text, message):
    with pytest.raises(SweepError, match=message):
        parse_seeds(text)


def test_seeds_parse():
    assert parse_seeds("0, 1,2") == [0, 1, 2]


def test_subsets_parse_into_lattice_order():
    assert parse_subsets(None) == [subset_name(s) for s in LATTICE]
    assert parse_subsets("all, none") == ["none", "text+face+prosody"]
    assert parse_subsets("Prosody+text,face") == ["face", "text+prosody"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (" , ", r"--subsets ' , ' is empty: give e.g. none,text,all"),
        (
            "text+voice",
            r"'text\+voice' is not none, all or a '\+'-joined list of text, face, prosody "
            r"\(unknown: voice\)",
        ),
        ("all,text+face+prosody", r"names a subset twice"),
    ],
)
def test_bad_subset_lists_are_refused(text, message):
    with pytest.raises(SweepError, match=message):
        parse_subsets(text)


def refusal(capsys, argv) -> str:
    assert sweep.main(argv) == 2
    return capsys.readouterr().err


def test_refusals_before_any_trial(tmp_path, capsys):
    common = ["--name", "x", "--storage-path", str(tmp_path / "exp"), "--config", str(DEMO)]
    assert "--mode 'grid' is not one of ablation, search" in refusal(capsys, ["--mode", "grid", *common])
    err = refusal(capsys, ["--mode", "ablation", "--target", "valence", *common])
    assert "--target 'valence' is not one of emotion, sentiment" in err
    assert "--seeds '' is empty" in refusal(capsys, ["--mode", "ablation", "--seeds", "", *common])
    err = refusal(capsys, ["--mode", "ablation", *common, "train.epoch=3"])
    assert "unknown config key 'train.epoch'; did you mean 'train.epochs'?" in err
    err = refusal(capsys, ["--mode", "ablation", *common, "loss.aux_weight_face=0"])
    assert "loss.aux_weight_face is 0; set it to the weight" in err
    err = refusal(capsys, ["--mode", "search", "--num-samples", "0", *common])
    assert "--num-samples must be >= 1" in err
    err = refusal(capsys, ["--mode", "search", "--subsets", "none", *common])
    assert "--subsets picks cells of the ablation grid; it has no meaning with --mode search" in err
    err = refusal(capsys, ["--mode", "ablation", "--subsets", "none,gaze", *common])
    assert "'none,gaze'" not in err and "--subsets: subset 'gaze' is not none, all" in err
    err = refusal(capsys, ["--mode", "ablation", "--runs-per-trial", "0", *common])
    assert "--runs-per-trial must be >= 1, got 0" in err
    err = refusal(capsys, ["--mode", "search", "--runs-per-trial", "2", *common])
    assert "--runs-per-trial groups the runs of the ablation grid; a search's ASHA stops each run" in err
    assert not (tmp_path / "exp").exists()  # nothing was created by a refused request


def test_an_unwritable_storage_path_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    argv = plan_argv(str(blocker / "exp"))
    assert f"--storage-path '{blocker / 'exp'}' is not writable" in refusal(capsys, argv)
    argv[-1] = "ftp://host/experiments"
    err = refusal(capsys, argv)
    assert "--storage-path: 'ftp://host/experiments': unknown storage scheme 'ftp://'" in err
    assert "or a URI of s3://, gs://" in err


def plan_argv(storage_path: str, *extra: str) -> list[str]:
    return [
        "--mode",
        "ablation",
        "--config",
        str(DEMO),
        "--name",
        "x",
        "--storage-path",
        storage_path,
        *extra,
    ]


def test_an_s3_storage_path_puts_the_experiment_in_the_bucket(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planned = request(plan_argv(f"s3://{s3_bucket}/experiments/"))
    assert planned.storage == f"s3://{s3_bucket}/experiments"
    assert planned.experiment_dir == f"s3://{s3_bucket}/experiments/x"
    assert list(tmp_path.iterdir()) == []  # nothing local: no "s3:" dir
    # The smoke test's data and a search's study stay local, under OMNIMER_CACHE_DIR.
    cache = tmp_path / "omnimer-cache"
    assert embedded_root(planned.storage) == cache / "embedded"
    assert study_file(planned.experiment_dir) == cache / "studies/s3" / s3_bucket / "experiments/x/optuna.db"
    assert embedded_root(str(tmp_path / "exp")) == tmp_path / "exp" / "_embedded"
    assert study_file(str(tmp_path / "exp" / "x")) == tmp_path / "exp" / "x" / "optuna.db"


def test_an_s3_storage_path_that_cannot_be_written_is_refused(s3_bucket, capsys):
    err = refusal(capsys, plan_argv("s3://no-such-bucket/experiments"))
    assert "--storage-path: s3://no-such-bucket/experiments/.write-probe-" in err
    assert "cannot be written" in err and "that the bucket exists" in err


def test_the_same_sweep_is_recognised_in_a_bucket(s3_bucket):
    planned = {"mode": "ablation", "target": "emotion", "seeds": [0], "subsets": ["none"]}
    planned.update(num_samples=None, base={"a": 1})
    experiment = f"s3://{s3_bucket}/experiments/abl"
    assert not check_same_sweep(experiment, planned)
    storage.write_json(storage.join(experiment, SWEEP_FILE), planned)
    assert check_same_sweep(experiment, planned)
    with pytest.raises(SweepError, match=r"different request \(seeds: \[0\] → \[1\]\); re-run"):
        check_same_sweep(experiment, {**planned, "seeds": [1]})
    first = start_invocation(experiment, 2, False)
    second = start_invocation(experiment, 4, True)
    end_invocation(experiment, second)
    invocations = storage.read_json(storage.join(experiment, INVOCATIONS_FILE))
    assert [(i["invocation"], i["resumed"], i["slots"]) for i in invocations] == [(1, False, 2), (2, True, 4)]
    # The first one's driver never ended it: its wall time stays unknown.
    assert invocations[0]["wall_seconds"] is None and invocations[1]["wall_seconds"] >= 0
    assert invocations[0] == first and len(invocations[1]["source_sha256"]) == 64


def test_a_missing_config_file_is_refused(tmp_path, capsys):
    argv = ["--mode", "ablation", "--config", str(tmp_path / "nope.yaml"), "--name", "x"]
    err = refusal(capsys, [*argv, "--storage-path", str(tmp_path)])
    assert f"--config {tmp_path / 'nope.yaml'}: no such file" in err


def test_more_gpus_per_trial_than_the_cluster_has_is_refused(ray_local, tmp_path, capsys):
    argv = ["--mode", "ablation", "--config", str(DEMO), "--name", "x", "--storage-path", str(tmp_path)]
    err = refusal(capsys, [*argv, "train.use_gpu=true", "train.num_workers=4"])
    assert "a trial needs 4 GPUs (train.num_workers=4 with train.use_gpu=true) but the cluster has 0" in err
    err = refusal(capsys, [*argv, "train.num_workers=3", "train.cpus_per_worker=0.5"])
    assert "a trial needs 1.625 CPUs" in err and "the cluster has 1 to give" in err


def test_a_different_sweep_under_the_same_name_is_refused(tmp_path):
    planned = {
        "mode": "ablation",
        "target": "emotion",
        "seeds": [0, 1],
        "num_samples": None,
        "base": {"a": 1},
    }
    # A sweep.json from before --subsets has no "subsets": it ran the whole grid.
    (tmp_path / SWEEP_FILE).write_text(json.dumps(planned))
    planned["subsets"] = parse_subsets(None)
    assert check_same_sweep(tmp_path, planned)
    with pytest.raises(SweepError, match=r"different request \(seeds: \[0, 1\] → \[0, 1, 2\]\)"):
        check_same_sweep(tmp_path, {**planned, "seeds": [0, 1, 2]})
    with pytest.raises(SweepError, match=r"different request \(subsets: \[.*\] → \[\"none\""):
        check_same_sweep(tmp_path, {**planned, "subsets": ["none", "text+face+prosody"]})
    # ... nor "runs_per_trial": each of its trials trained one run.
    assert check_same_sweep(tmp_path, {**planned, "runs_per_trial": 1})
    with pytest.raises(SweepError, match=r"different request \(runs_per_trial: 1 → 8\)"):
        check_same_sweep(tmp_path, {**planned, "runs_per_trial": 8})
    assert not check_same_sweep(tmp_path / "new", planned)


def test_runs_per_trial_is_a_number_or_auto(tmp_path, capsys):
    argv = plan_argv(str(tmp_path / "exp"), "--runs-per-trial")
    with pytest.raises(SystemExit) as refused:
        sweep.main([*argv, "eight"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "argument --runs-per-trial: expected a number of runs or 'auto', got 'eight'" in err
    assert sweep.build_parser().parse_args([*argv, "auto"]).runs_per_trial == "auto"
    assert sweep.build_parser().parse_args([*argv, "8"]).runs_per_trial == 8


def test_auto_runs_per_trial_of_a_started_sweep_is_the_one_it_was_started_with(tmp_path, caplog):
    """Resuming with ``--runs-per-trial auto`` probes nothing: the sweep keeps its grouping (another
    would be refused), 1 for a sweep.json from before --runs-per-trial; a search trains one run per
    trial. (A new ablation's probe and choice: tests/test_plan.py and the e2e test.)"""
    from omnimer.sweep.plan import PLAN_FILE, choose_runs_per_trial

    planned = request(plan_argv(str(tmp_path)))
    Path(planned.experiment_dir).mkdir(parents=True)
    sweep_file = Path(planned.experiment_dir) / SWEEP_FILE
    sweep_file.write_text(json.dumps(planned.to_json() | {"runs_per_trial": 4}))
    with caplog.at_level(logging.INFO, logger="omnimer"):
        chosen, plan = choose_runs_per_trial(planned)
    assert chosen.runs_per_trial == 4 and plan is None and check_same_sweep(planned.experiment_dir, chosen)
    assert f"--runs-per-trial auto: 4, as {planned.experiment_dir} was started" in caplog.text
    sweep_file.write_text(json.dumps({k: v for k, v in planned.to_json().items() if k != "runs_per_trial"}))
    assert choose_runs_per_trial(planned)[0].runs_per_trial == 1
    searched = request(["--mode", "search", *plan_argv(str(tmp_path / "s"))[2:]])
    assert choose_runs_per_trial(searched) == (searched, None)
    assert not (Path(planned.experiment_dir) / PLAN_FILE).exists()


# Where a Ray session unpacks a job's working dir (`ray job submit --working-dir .`).
UNPACKED = "/tmp/ray/session_2026-11-29_18-26-52_805568_18464/runtime_resources/working_dir_files"


def request(argv: list[str]):
    """The request the script makes of ``argv``, as it makes it before connecting to Ray."""
    return sweep.request_from_args(sweep.build_parser().parse_args(argv))


def planned_sweep(tmp_path: Path, *extra: str) -> dict:
    planned = request(plan_argv(str(tmp_path / "exp"), *extra))
    return planned.with_base(with_absolute_paths(TrainConfig.from_dict(planned.base)).to_dict()).to_json()


def test_the_request_holds_no_path_into_the_code_and_names_what_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path in the request would show up as one under tmp_path
    planned = planned_sweep(tmp_path)
    assert planned["config_path"] == "sweeps/configs/demo.yaml"
    assert planned["base"]["train"]["deepspeed_config"] == "cluster/deepspeed/zero2.json"
    assert planned["base"]["run"]["output_dir"] == str(tmp_path / "exp" / "x" / "runs")
    assert str(REPO) not in json.dumps(planned)
    experiment = tmp_path / "exp" / "x"
    experiment.mkdir(parents=True)
    # sweep.json of the same request, written by an earlier Ray session from its unpacked copy of the
    # repository (as versions before repo-relative paths wrote it): the same sweep.
    earlier = json.loads(json.dumps(planned))
    earlier["config_path"] = f"{UNPACKED}/_ray_pkg_8129c3bea9bac654/sweeps/configs/demo.yaml"
    earlier["base"]["train"]["deepspeed_config"] = (
        f"{UNPACKED}/_ray_pkg_8129c3bea9bac654/cluster/deepspeed/zero2.json"
    )
    earlier["base"]["run"]["output_dir"] = f"{UNPACKED}/_ray_pkg_8129c3bea9bac654/runs/train"
    (experiment / SWEEP_FILE).write_text(json.dumps(earlier))
    assert check_same_sweep(experiment, planned)
    # Another request: the refusal names each differing key with both values.
    changed = planned_sweep(tmp_path, "train.lr=0.001", "train.deepspeed_config=cluster/deepspeed/zero3.json")
    with pytest.raises(SweepError) as refused:
        check_same_sweep(experiment, changed)
    message = str(refused.value)
    assert "holds a sweep started with a different request (" in message
    assert "train.lr: 0.003 → 0.001" in message
    zero = 'train.deepspeed_config: "cluster/deepspeed/zero2.json" → "cluster/deepspeed/zero3.json"'
    assert zero in message
    assert "seeds" not in message and "run.output_dir" not in message


def test_a_storage_path_inside_a_ray_jobs_working_dir_is_refused(tmp_path, capsys, monkeypatch):
    unpacked = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    unpacked.mkdir(parents=True)
    monkeypatch.chdir(unpacked)
    err = refusal(capsys, plan_argv("runs/sweeps"))
    resolved = unpacked / "runs" / "sweeps"
    assert f"--storage-path 'runs/sweeps' resolves to {resolved}, inside this Ray job" in err
    assert "give an absolute path on storage every node sees" in err


def test_the_terminal_gets_a_line_per_run_of_a_group_trial_and_one_when_the_trial_ends(caplog):
    from types import SimpleNamespace

    from omnimer.sweep.progress import TrialLines

    cells = [list(LATTICE[0]), list(LATTICE[-1])]
    config = params(runs=run_groups(cells, [0], 2)[0])
    config["base"]["train"]["epochs"] = 2
    trial = SimpleNamespace(trial_id="t0", config=config, status="RUNNING")
    lines = TrialLines(total=1)
    caplog.set_level(logging.INFO, logger="omnimer.sweeps")
    lines.on_trial_start(0, [trial], trial)
    for run, epoch, valid in (
        ("none-seed0", 1, 0.1),
        ("none-seed0", 2, 0.2),
        ("text+face+prosody-seed0", 1, 0.3),
    ):
        lines.on_trial_result(0, [trial], trial, {"run": run, "epoch": epoch, "best_valid_macro_f1": valid})
    lines.on_trial_result(
        0, [trial], trial, {"run": "text+face+prosody-seed0", "epoch": 2, "best_valid_macro_f1": 0.4}
    )
    lines.on_trial_complete(0, [trial], trial)
    text = [r.getMessage() for r in caplog.records]
    assert [t.split(" (")[0] for t in text] == [
        "  none-seed0 finished: valid macro-F1 0.200",
        "  text+face+prosody-seed0 finished: valid macro-F1 0.400",
        "[1/1] 2 runs",
    ]
    assert text[-1].startswith("[1/1] 2 runs (none seed 0 … text+face+prosody seed 0) finished (")
