"""analysis/search.py: the search summary and the best configuration, from search records and the
Optuna study as a search sweep writes them (tests/recordfiles.py: valid macro-F1 rises with the LoRA
rank and with focal loss), and the report of a search.

    .venv/bin/python -m pytest tests/test_analysis_search.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from recordfiles import assert_png, write_search_experiment

from analysis import search
from analysis.report import analyse, build_tables, write_report
from omnimer.config import load_train_config


@pytest.fixture
def search_dir(tmp_path: Path) -> Path:
    return write_search_experiment(tmp_path / "search")


def test_search_summary_ranks_trials_and_the_best_config_loads(search_dir: Path, tmp_path: Path) -> None:
    experiment = analyse([search_dir])
    assert experiment.study is not None and not experiment.has_ablation
    summary = search.search_frame(experiment.frame, experiment.study, top_k=3)
    assert list(summary["run_name"]) == ["trial_2", "trial_4", "trial_1"]  # by valid macro-F1
    assert "model.lora.rank" in summary and "train.lr" in summary and "loss.aux_weight_text" in summary
    assert "train.seed" not in summary and "run.name" not in summary
    assert summary.loc[0, "loss.gamma"] == 2.5
    full = search.search_frame(experiment.frame, experiment.study, top_k=10)
    # Ranked: finished and ASHA-stopped trials with metrics; not the failed one nor the one stopped
    # before it had any.
    assert len(full) == 6 and "stopped" in set(full["status"]) and "trial_early" not in set(full["run_name"])
    assert math.isnan(full.set_index("run_name").loc["trial_3", "loss.gamma"])  # scheme none

    best = search.best_config(experiment.frame, experiment.study)
    assert best["model"]["lora"] == {"rank": 16, "alpha": 32.0}
    assert best["loss"]["scheme"] == "focal" and best["loss"]["gamma"] == 2.5
    assert best["train"] == {"lr": 2e-4}
    text = search.best_config_yaml(experiment.frame, experiment.study, "search")
    assert text.startswith("# Best trial of search search: trial_2")
    path = tmp_path / "best_config.yaml"
    path.write_text(text)
    config = load_train_config(str(path))  # what sweeps/aux_ablation.py --best-of reads
    assert (config.model.lora.rank, config.train.lr, config.loss.scheme) == (16, 2e-4, "focal")

    # Without the records (say, they were not copied), the study's own best trial gives the config.
    no_records = experiment.frame[experiment.frame["mode"] != "search"]
    from_study = search.best_config(no_records, experiment.study)
    assert from_study == {
        "model": {"lora": {"rank": 16, "alpha": 32.0}},
        "train": {"lr": 2e-4},
        "loss": {"scheme": "focal", "gamma": 2.5},
    }

    markdown = build_tables(experiment, "md")["search_summary"]
    assert "8 search trials: 5 finished, 2 stopped, 1 failed, 0 running" in markdown
    latex = build_tables(experiment, "latex")["search_summary"]
    assert r"model.lora.rank" in latex and r"aux\_weight\_text" in latex


def test_best_config_from_the_study_alone_maps_param_names() -> None:
    keys = [
        "model.lora.rank",
        "model.lora.alpha",
        "train.lr",
        "loss.aux_weight_face",
        "train.seed",
        "run.name",
    ]
    assert search.config_key_for_param("lora_rank", keys) == "model.lora.rank"
    assert search.config_key_for_param("rank", keys) == "model.lora.rank"
    assert search.config_key_for_param("lr", keys) == "train.lr"
    assert search.config_key_for_param("aux_weight_face", keys) == "loss.aux_weight_face"
    assert search.config_key_for_param("seed", keys) is None  # not a hyperparameter
    assert search.config_key_for_param("name", keys) is None


def test_the_report_of_a_search_has_its_plots_and_best_config(search_dir: Path, tmp_path: Path) -> None:
    search_out = tmp_path / "search-report"
    text = write_report(analyse([search_dir]), search_out).read_text()
    for name in ("optuna_param_importance.png", "optuna_parallel_coordinates.png", "learning_curves.png"):
        assert f"]({name})" in text
        assert_png(search_out / name)
    assert "## Hyperparameter search" in text and "```yaml" in text and "## Failed trials" in text
    assert (search_out / "best_config.yaml").is_file()
    assert not list(search_out.glob(".*tmp*"))  # atomic writes leave no temporaries
