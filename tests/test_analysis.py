"""analysis/: records → tables, attribution, plots and report, on synthetic records with planted effects.

    .venv/bin/python -m pytest tests/test_analysis.py -q

The records (tests/recordfiles.py) are in the format ``omnimer.training.driver.run_training`` writes
(schema version 1, config from ``omnimer.config.TrainConfig``), plus a sweep trial's ``sweep`` block.
The planted truth: test macro-F1 = 0.40 + 0.05·face + 0.02·text·prosody + a per-seed offset +
noise, over 3 seeds; so the main effects are face 0.05, text 0.01, prosody 0.01, the Shapley values
the same, the text×prosody interaction 0.02 and the other interactions 0.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from recordfiles import (
    LABELS,
    PER_CLASS_OFFSETS,
    SEARCH_SPACE,
    assert_png,
    make_record,
    write_record,
    write_search_experiment,
)

from analysis import attribution, records, stats, tables
from analysis.__main__ import main
from analysis.records import AnalysisError
from analysis.report import ablation_summary, analyse, build_tables, write_report
from omnimer.subsets import LATTICE, TASKS, subset_name

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
SEED_OFFSET = {0: 0.012, 1: -0.008, 2: -0.004}
NOISE = 0.004
PLANTED_SHAPLEY = {"text": 0.01, "face": 0.05, "prosody": 0.01}
PLANTED_MAIN = PLANTED_SHAPLEY
PLANTED_INTERACTION = {"text×face": 0.0, "text×prosody": 0.02, "face×prosody": 0.0}


def planted_value(subset) -> float:
    text, face, prosody = subset
    return 0.40 + 0.05 * face + 0.02 * (text and prosody)


def planted_values(noise_seed: int = 7) -> dict[tuple, float]:
    rng = np.random.default_rng(noise_seed)
    return {
        (subset, seed): planted_value(subset) + SEED_OFFSET[seed] + rng.normal(0, NOISE)
        for subset in LATTICE
        for seed in SEEDS
    }


def write_ablation(exp_dir: Path, values: dict[tuple, float], failed: set[tuple] = frozenset()) -> None:
    for (subset, seed), value in values.items():
        status = "failed" if (subset, seed) in failed else "finished"
        write_record(exp_dir, f"{subset_name(subset)}-s{seed}", make_record(subset, seed, value, status))


@pytest.fixture
def ablation_dir(tmp_path: Path) -> Path:
    exp = tmp_path / "ablation"
    write_ablation(exp, planted_values())
    return exp


# ------------------------------------------------------------------------------------ planted effects


def test_planted_effects_come_out_of_table_main_effects_and_shapley(ablation_dir: Path) -> None:
    experiment = analyse([ablation_dir])
    table = experiment.ablation.set_index("subset")
    assert list(table.index) == [subset_name(s) for s in LATTICE]
    assert (table["n"] == 3).all() and (table["failed"] == 0).all()
    for subset in LATTICE:
        expected = planted_value(subset) + np.mean(list(SEED_OFFSET.values()))
        assert table.loc[subset_name(subset), "macro_f1_mean"] == pytest.approx(expected, abs=0.01)
    assert table.loc["face", "delta_macro_f1_vs_none"] == pytest.approx(0.05, abs=0.01)

    result = experiment.attribution
    assert result.available
    main_effects = {e.name: e for e in result.main_effects}
    shapley = {e.name: e for e in result.shapley}
    interactions = {e.name: e for e in result.interactions}
    for task in TASKS:
        assert main_effects[task].estimate == pytest.approx(PLANTED_MAIN[task], abs=0.006)
        assert shapley[task].estimate == pytest.approx(PLANTED_SHAPLEY[task], abs=0.006)
    for pair, planted in PLANTED_INTERACTION.items():
        assert interactions[pair].estimate == pytest.approx(planted, abs=0.008)
    # The intervals of the main effects and Shapley values cover the planted values. (A 95% interval
    # misses 1 time in 20 by design: test_interval_coverage_of_both_bootstrap_methods checks the rate;
    # this fixture's noise seed was not tuned, and its face×prosody interval happens to miss 0.)
    for effects, planted in ((main_effects, PLANTED_MAIN), (shapley, PLANTED_SHAPLEY)):
        for task in TASKS:
            assert effects[task].ci_low <= planted[task] <= effects[task].ci_high, (task, effects[task])
    text_prosody = interactions["text×prosody"]
    assert text_prosody.ci_low <= 0.02 <= text_prosody.ci_high and text_prosody.ci_low > 0
    # face's 12 seed-paired differences are all positive: the exact sign-flip p is 2 / 2^12.
    assert main_effects["face"].p_value == pytest.approx(2 / 2**12)


def test_shapley_values_sum_exactly_to_all_minus_none(ablation_dir: Path) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.uniform(0, 1, len(LATTICE))
        total = attribution.shapley_values(values).sum()
        assert total == pytest.approx(values[-1] - values[0], abs=1e-12)
    result = analyse([ablation_dir]).attribution
    assert sum(e.estimate for e in result.shapley) == pytest.approx(result.total, abs=1e-12)
    # Exact fractions of the Shapley weights for 3 players: 1/3, 1/6, 1/6, 1/3.
    weights = attribution.shapley_weights()[0]
    assert weights[LATTICE.index((True, False, False))] == pytest.approx(1 / 3)
    assert weights[LATTICE.index((True, True, False))] == pytest.approx(1 / 6)


def test_interval_coverage_of_both_bootstrap_methods() -> None:
    """Simulated lattices with 3 seeds: the default residual bootstrap covers the planted contrasts
    about 93% of the time; resampling 3 whole seeds only spans their range (≈ 75%)."""
    weights = np.vstack(
        [attribution.shapley_weights(), attribution.main_effect_weights(), attribution.interaction_weights()]
    )
    truth_cells = np.array([planted_value(s) for s in LATTICE])
    truth = weights @ truth_cells
    rng = np.random.default_rng(3)
    covered = {"residuals": [], "seeds": []}
    for _ in range(150):
        cells = truth_cells[:, None] + rng.normal(0, 0.02, 3)[None, :] + rng.normal(0, 0.01, (8, 3))
        for method, boot in (
            ("residuals", stats.bootstrap_residual_means),
            ("seeds", stats.bootstrap_seed_means),
        ):
            low, high = stats.percentile_interval(weights @ boot(cells, 400, rng))
            covered[method].append((low <= truth) & (truth <= high))
    assert np.mean(covered["residuals"]) > 0.85
    assert np.mean(covered["seeds"]) < 0.85


def test_seed_adjusted_means_with_a_missing_seed() -> None:
    cells = np.add.outer(np.arange(8.0), [0.5, -0.2, -0.3])  # additive: cell + seed
    cells[2, 0] = np.nan
    cell_effect, seed_effect = stats.additive_fit(cells)
    np.testing.assert_allclose(cell_effect, np.arange(8.0), atol=1e-9)
    np.testing.assert_allclose(seed_effect, [0.5, -0.2, -0.3], atol=1e-9)
    assert stats.residual_dof(cells) == 23 - 8 - 2


# ------------------------------------------------------------------------------------ the ablation table


def test_mean_std_match_numpy_and_a_failed_trial_is_counted_not_averaged(tmp_path: Path) -> None:
    values = planted_values()
    face = LATTICE[2]
    write_ablation(tmp_path / "exp", values, failed={(face, 2)})
    experiment = analyse([tmp_path / "exp"])
    row = experiment.ablation.set_index("subset").loc["face"]
    kept = [values[(face, 0)], values[(face, 1)]]
    assert (row["n"], row["failed"]) == (2, 1)
    assert row["macro_f1_mean"] == np.mean(kept)
    assert row["macro_f1_std"] == np.std(kept, ddof=1)
    assert row["weighted_f1_mean"] == pytest.approx(np.mean(kept) + 0.05)
    assert row["device_seconds"] == 200.0  # the failed record reports none
    none = experiment.ablation.set_index("subset").loc["none"]
    assert none["macro_f1_std"] == np.std([values[(LATTICE[0], s)] for s in SEEDS], ddof=1)

    markdown = tables.format_ablation(experiment.ablation, "md", "emotion")
    face_line = next(line for line in markdown.splitlines() if line.startswith("| ✗ | ✓ | ✗ |"))
    cells = [c.strip() for c in face_line.strip("|").split("|")]
    assert cells[3:5] == ["2", "1"]  # n, failed
    assert cells[5] == f"{np.mean(kept):.3f} ± {np.std(kept, ddof=1):.3f}"
    assert "| text | face | prosody | n | failed |" in markdown
    # Still a full lattice (face has 2 seeds): attribution runs, on seed-adjusted means.
    assert experiment.attribution.available


def test_latex_is_balanced_booktabs_with_escaped_underscores(ablation_dir: Path, tmp_path: Path) -> None:
    experiment = analyse([ablation_dir])
    rendered = build_tables(experiment, "latex")
    for name in ("ablation", "attribution", "per_class_f1"):
        latex = rendered[name]
        assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
        assert latex.count(r"\begin{table}") == latex.count(r"\end{table}") == 1
        assert all(k in latex for k in (r"\toprule", r"\midrule", r"\bottomrule"))
        unescaped = latex.replace(r"\{", "").replace(r"\}", "")
        assert unescaped.count("{") == unescaped.count("}"), name
        assert re.search(r"(?<!\\)_", latex.split("\n", 1)[1]) is None, name  # after the % comment line
        spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", latex).group(1)
        body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        header = latex.split(r"\toprule")[1].split(r"\midrule")[0].strip()
        for line in [header, *body]:
            assert line.endswith(r"\\") and line.count(" & ") == len(spec) - 1, line
    assert r"senang\_sekali" in rendered["per_class_f1"]
    ablation = rendered["ablation"]
    assert ablation.count(r"\textbf{") == 3  # one best cell per metric
    best = experiment.ablation["macro_f1_mean"].idxmax()
    assert experiment.ablation.loc[best, "subset"] == "text+face+prosody"
    assert r"\checkmark & \checkmark & \checkmark & 3 & 0 & \textbf{" in ablation


def test_csv_round_trips_with_pandas(ablation_dir: Path, tmp_path: Path) -> None:
    experiment = analyse([ablation_dir])
    text = tables.format_ablation(experiment.ablation, "csv")
    path = tmp_path / "ablation.csv"
    path.write_text(text)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, experiment.ablation, check_dtype=False)
    per_class = tables.per_class_frame(experiment.frame, tables.default_subsets(experiment.ablation))
    path.write_text(tables.format_per_class(per_class, "csv"))
    pd.testing.assert_frame_equal(pd.read_csv(path), per_class, check_dtype=False)


def test_subset_names_parse_and_bad_ones_are_refused() -> None:
    assert records.parse_subset("none") == LATTICE[0] and records.parse_subset(" ALL ") == LATTICE[-1]
    assert records.parse_subset("aux_prosody+Text") == (True, False, True)
    with pytest.raises(records.AnalysisError, match=r"'face\+gaze' is not none, all .*\(unknown: gaze\)"):
        records.parse_subset("face+gaze")
    with pytest.raises(records.AnalysisError, match=r"\(unknown: ''\), e.g. text\+prosody"):
        records.parse_subset("text+")


def test_per_class_table_shows_support_and_the_chosen_subsets(ablation_dir: Path) -> None:
    experiment = analyse([ablation_dir])
    chosen = tables.default_subsets(experiment.ablation)
    assert [subset_name(s) for s in chosen] == ["none", "text+face+prosody"]  # all-aux is also the best
    per_class = tables.per_class_frame(experiment.frame, [records.parse_subset("face"), LATTICE[0]])
    assert list(per_class["label"]) == LABELS and list(per_class["support"]) == [20, 12, 8]
    face_values = [planted_values()[(LATTICE[2], s)] + PER_CLASS_OFFSETS[2] for s in SEEDS]
    assert per_class.loc[2, "face_mean"] == pytest.approx(np.mean(face_values))
    assert "| sedih | 8 |" in tables.format_per_class(per_class, "md")


def test_summary_has_the_table_and_the_shapley_lines(ablation_dir: Path) -> None:
    text = ablation_summary([ablation_dir], target="emotion")
    assert "| ✗ | ✓ | ✗ | 3 | 0 |" in text
    assert "Shapley attribution of test macro_f1" in text
    face = next(line for line in text.splitlines() if line.strip().startswith("face "))
    assert re.search(r"Shapley \+0\.0(49|50|51) \[", face) and "sign-flip p = 0.000488" in face


# ------------------------------------------------------------------------------------ bad input


def test_empty_experiment_dir_is_refused_with_its_path(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["tables", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "empty") in error and "no record.json" in error
    assert main(["tables", str(tmp_path / "absent")]) == 2
    assert "no such experiment dir" in capsys.readouterr().err


def test_unknown_schema_version_names_the_file(ablation_dir: Path, capsys) -> None:
    record = make_record(LATTICE[0], 9, 0.4)
    record["schema_version"] = 2
    path = write_record(ablation_dir, "from-the-future", record)
    with pytest.raises(AnalysisError, match=re.escape(str(path)) + ".*schema_version 2.*reads version 1"):
        records.load_trials([ablation_dir])
    assert main(["tables", str(ablation_dir)]) == 2
    assert "schema_version 2" in capsys.readouterr().err


def test_mixed_targets_are_refused_unless_one_is_chosen(ablation_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "sentiment-exp"
    write_record(other, "s0", make_record(LATTICE[0], 0, 0.6, target="sentiment"))
    with pytest.raises(AnalysisError, match="mix targets.*--target"):
        analyse([ablation_dir, other])
    assert analyse([ablation_dir, other], target="emotion").ablation["n"].sum() == 24
    assert analyse([ablation_dir, other], target="sentiment").ablation["n"].sum() == 1
    with pytest.raises(AnalysisError, match="no record has target 'sentiment'"):
        analyse([ablation_dir], target="sentiment")


def test_subset_without_finished_trial_is_named_and_the_rest_still_shown(tmp_path: Path, caplog) -> None:
    values = planted_values()
    prosody = LATTICE[3]
    write_ablation(tmp_path / "exp", values, failed={(prosody, s) for s in SEEDS})
    experiment = analyse([tmp_path / "exp"])
    assert "no finished trial for subset(s) prosody" in caplog.text
    assert "subset prosody: 3 failed trial(s)" in caplog.text and "worker died" in caplog.text
    table = experiment.ablation.set_index("subset")
    assert table.loc["prosody", "n"] == 0 and table.loc["prosody", "failed"] == 3
    assert math.isnan(table.loc["prosody", "macro_f1_mean"])
    assert (table.drop(index="prosody")["n"] == 3).all()
    assert not experiment.attribution.available
    assert experiment.attribution.missing == ["prosody"]
    summary = ablation_summary([tmp_path / "exp"])
    assert "| ✗ | ✗ | ✓ | 0 | 3 | — |" in summary
    assert "Shapley attribution unavailable: no finished trial for subset(s) prosody" in summary


# ------------------------------------------------------------------------------------ report


def test_report_writes_markdown_and_pngs(ablation_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    path = write_report(analyse([ablation_dir], n_boot=500), out)
    text = path.read_text()
    for name in ("shapley.png", "per_class_f1.png", "confusion_matrices.png", "learning_curves.png"):
        assert f"]({name})" in text
        assert_png(out / name)
    assert "## Aux-task ablation" in text and "Shapley" in text and "| text | face | prosody |" in text
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_cli_tables_runs_as_a_module(ablation_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "tables",
            str(ablation_dir),
            "--target",
            "emotion",
            "--format",
            "csv",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "out.csv").write_text(result.stdout)
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table["subset"]) == [subset_name(s) for s in LATTICE] and (table["n"] == 3).all()


def test_cli_writes_one_file_per_table(ablation_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["tables", str(ablation_dir), "--format", "latex", "--out", str(tmp_path / "t")]) == 0
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert names == ["ablation.tex", "attribution.tex", "per_class_f1.tex"]
    assert main(["tables", str(ablation_dir), "--table", "search_summary"]) == 2
    assert "has no search_summary table" in capsys.readouterr().err


def test_tables_read_an_experiment_in_a_bucket_as_they_read_a_local_one(
    ablation_dir: Path, tmp_path: Path, s3_bucket: str, capsys
) -> None:
    from omnimer import storage

    search_dir = write_search_experiment(tmp_path / "search")
    for local in (ablation_dir, search_dir):
        storage.upload_dir(local, f"s3://{s3_bucket}/experiments/{local.name}")
    for local in (ablation_dir, search_dir):
        assert main(["tables", str(local)]) == 0
        expected = capsys.readouterr().out
        assert main(["tables", f"s3://{s3_bucket}/experiments/{local.name}/"]) == 0
        assert capsys.readouterr().out == expected
    experiment = analyse([f"s3://{s3_bucket}/experiments/search"])
    assert experiment.name == "search" and len(experiment.study.trials) == len(SEARCH_SPACE)
    paths = set(experiment.frame["record_path"])
    assert f"s3://{s3_bucket}/experiments/search/runs/trial_0/record.json" in paths
    assert set(experiment.frame["run_name"]) >= {"trial_0", "trial_failed"}
    assert main(["tables", f"s3://{s3_bucket}/experiments/absent"]) == 2
    assert f"s3://{s3_bucket}/experiments/absent: no such experiment dir" in capsys.readouterr().err
    assert main(["tables", "ftp://host/exp"]) == 2
    assert "unknown storage scheme 'ftp://'" in capsys.readouterr().err


def test_a_file_uri_reads_as_the_local_dir(ablation_dir: Path, capsys) -> None:
    assert main(["tables", str(ablation_dir)]) == 0
    expected = capsys.readouterr().out
    assert main(["tables", ablation_dir.as_uri()]) == 0
    assert capsys.readouterr().out == expected


def test_the_report_says_which_invocation_ran_which_trials(ablation_dir: Path) -> None:
    from analysis.report import invocation_lines

    paths = sorted((ablation_dir / "runs").glob("*/record.json"))
    for path, invocation in zip(paths, (1, 2, 2), strict=False):
        record = json.loads(path.read_text())
        record["sweep"]["invocation"] = invocation
        record["source_sha256"] = "ab" * 32
        path.write_text(json.dumps(record))
    code = {"git": {"sha": None, "dirty": None}, "host": "head-0", "slots": 4}
    invocations = [
        {"invocation": 1, "started": 1795981534.0, **code, "source_sha256": "ab" * 32, "resumed": False},
        {"invocation": 2, "started": 1795985134.0, **code, "source_sha256": "cd" * 32, "resumed": True},
    ]
    invocations[0]["wall_seconds"], invocations[1]["wall_seconds"] = None, 95.4
    (ablation_dir / "invocations.json").write_text(json.dumps(invocations))
    lines = invocation_lines(analyse([ablation_dir], n_boot=100))
    first = next(line for line in lines if line.startswith("| 1 |"))
    second = next(line for line in lines if line.startswith("| 2 |"))
    names = [p.parent.name for p in paths]
    assert first == (
        f"| 1 | 2026-11-29 19:45 | head-0 | source abababababab | 4 | no | did not end (driver lost) "
        f"| 1: `{names[0]}` |"
    )
    assert second.startswith("| 2 | 2026-11-29 20:45 | head-0 | source cdcdcdcdcdcd | 4 | yes | 95 s | 2: ")
    assert f"`{names[1]}`" in second and f"`{names[2]}`" in second
    assert f"{len(paths) - 3} trial(s) were recorded before invocations were numbered." in "\n".join(lines)


def test_experiments_that_differ_beyond_subset_and_seed_are_not_averaged(tmp_path: Path, capsys) -> None:
    """Two sweeps of the lattice: the same experiment (another path, the same shards) merges; one
    with another learning rate or other shards is refused with the keys, unless --allow-mixed."""
    values = planted_values()
    for name, lr, fingerprint, path in (
        ("a", 1e-4, "f" * 64, "/data/shards"),
        ("b", 1e-4, "f" * 64, "/mnt/other/shards"),
        ("c", 3e-4, "e" * 64, "/data/shards"),
    ):
        for (subset, seed), value in values.items():
            record = make_record(subset, seed, value, overrides={"train.lr": lr, "data.path": path})
            record["dataset"]["fingerprint"] = fingerprint
            write_record(tmp_path / name, f"{subset_name(subset)}-s{seed}", record)
    assert analyse([tmp_path / "a", tmp_path / "b"], n_boot=50).ablation["n"].tolist() == [6] * 8
    with pytest.raises(AnalysisError) as refused:
        analyse([tmp_path / "a", tmp_path / "c"], n_boot=50)
    message = str(refused.value)
    assert "ran different experiments" in message and "train.lr: 0.0001 → 0.0003" in message
    assert f'dataset.fingerprint: "{"f" * 64}" → "{"e" * 64}"' in message and "--allow-mixed" in message
    assert main(["summary", str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "ran different experiments" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "a"), str(tmp_path / "c"), "--allow-mixed"]) == 0
    assert "MIXED experiments (averaged with --allow-mixed)" in capsys.readouterr().out
