"""`omnimer train` end to end on CPU: 2 Ray Train workers, DeepSpeed ZeRO-2 (fp32 + gloo), the tiny
Thinker on synthetic IndoMER-format shards. Checks the loss, record.json, TensorBoard events, the
best adapter, and that a worker dying mid-run ends with the same final metrics as an unbroken run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "omnimer.cli"]
REPO = Path(__file__).resolve().parents[1]


def run(args, env, timeout=900, command=CLI):
    result = subprocess.run(command + args, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-5000:])
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Synthetic corpus → shards, and the tiny model (built once for the module)."""
    import os
    import shutil
    import tempfile

    root = tmp_path_factory.mktemp("train")
    ray_tmp = tempfile.mkdtemp(prefix="omr-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    run(
        [
            "synth",
            "--out",
            str(root / "corpus"),
            "--clips",
            "60",
            "--speakers",
            "6",
            "--seconds",
            "1",
            "--size",
            "64",
        ],
        env,
    )
    run(
        [
            "ingest",
            "--format",
            "indomer",
            "--input",
            str(root / "corpus"),
            "--out",
            str(root / "shards"),
            "--frames",
            "4",
            "--size",
            "56",
            "--max-audio-seconds",
            "1",
            "--num-cpus",
            "2",
        ],
        env,
    )
    run(["tiny-model", "--out", str(root / "tiny")], env)
    yield root, env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def train(workspace, name, *extra):
    root, env = workspace
    args = [
        "train",
        "--config",
        "sweeps/configs/smoke.yaml",
        "--num-cpus",
        "2",
        f"data.path={root / 'shards'}",
        f"model.name_or_path={root / 'tiny'}",
        f"run.output_dir={root / 'runs'}",
        f"run.name={name}",
        # both workers race to stage the model on this (one) node: one copies, the other waits
        f"model.stage_dir={root / 'stage'}",
        "train.epochs=2",
        "train.max_steps_per_epoch=4",
        "train.batch_size=2",
        *extra,
    ]
    result = run(args, env)
    return root / "runs" / name, result


@pytest.fixture(scope="module")
def unbroken(workspace):
    return train(workspace, "unbroken")


def test_run_writes_record_events_and_adapter(workspace, unbroken):
    run_dir, result = unbroken
    assert "run unbroken: best epoch" in result.stdout
    assert "row/s" not in result.stdout + result.stderr  # no worker's Ray Data progress bars
    # nor, on this local Ray without a state API, a placement-group cleaner failing to query it
    assert "PlacementGroupCleaner" not in result.stdout + result.stderr
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "finished" and record["schema_version"] == 1
    assert len(record["epochs"]) == 2 and record["best_epoch"] in (1, 2)
    assert set(record["test"]) >= {"macro_f1", "weighted_f1", "accuracy", "per_class_f1", "confusion_matrix"}
    assert record["git"]["sha"] and record["packages"]["deepspeed"] == "0.19.8"
    assert record["device_seconds"] > 0 and record["wall_seconds"] > 0
    assert record["config"]["train"]["num_workers"] == 2
    (setup,) = record["setup_seconds"]  # one start of the worker group
    assert set(setup) == {"model staging", "model", "data", "DeepSpeed"}
    root, _ = workspace
    staged = [p for p in (root / "stage").iterdir() if p.is_dir()]
    assert len(staged) == 1 and (staged[0] / ".omnimer-staged.json").is_file()
    assert not list((root / "stage").glob(".*.tmp-*"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {
        "loss/main",
        "loss/text",
        "loss/face",
        "loss/prosody",
        "loss/total",
        "lr",
        "valid/macro_f1",
    } <= set(tags["scalars"])
    assert any(t.startswith("valid_per_class_f1/") for t in tags["scalars"])
    assert "valid/confusion_matrix" in tags["images"]
    # drawn once, at the run's end, for the epoch the record selects
    drawn = [image.step for image in events.Images("valid/confusion_matrix")]
    assert drawn == [record["best_epoch"]]
    total = [e.value for e in events.Scalars("loss/total")]
    assert len(total) == 8 and total[-1] < total[0]  # the loss falls over 8 steps

    import torch

    # The checkpoints hold the trainable (LoRA) weights, not the frozen model (a 7B's ~18 GB per epoch).
    for states in run_dir.glob("checkpoint_*/deepspeed/mp_rank_00_model_states.pt"):
        saved = torch.load(states, map_location="cpu", weights_only=False)
        assert saved["module"] and all(".lora_" in name for name in saved["module"])
        assert not saved["frozen_param_fragments"]

    from peft import PeftModel

    from omnimer.config import ModelConfig
    from omnimer.model.load import load_thinker

    root, _ = workspace
    model = PeftModel.from_pretrained(
        load_thinker(ModelConfig(name_or_path=str(root / "tiny"))), str(run_dir / "best_adapter")
    )
    assert any("lora_B" in name for name, _ in model.named_parameters())


def test_the_selected_epochs_predictions_are_written_per_clip_and_named_in_the_record(workspace, unbroken):
    """Both workers' clips, one row each, for the epoch the record reports: the metrics recomputed
    from the files are the record's, and the record names the files with their hashes, the
    verbalizers, their token ids and the scoring method."""
    import hashlib

    import pyarrow.parquet as pq

    from omnimer.metrics import classification_metrics

    run_dir, _ = unbroken
    root, _ = workspace
    record = json.loads((run_dir / "record.json").read_text())
    info = json.loads((root / "shards" / "dataset.json").read_text())
    labels = info["label_sets"]["emotion"]["names"]
    assert record["scoring"]["method"] == "first_token" and record["scoring"]["labels"] == labels
    assert len(record["scoring"]["verbalizers"]) == len(record["scoring"]["token_ids"]) == len(labels)
    assert [ids[0] for ids in record["scoring"]["token_ids"]] == record["scoring"]["first_token_ids"]
    for split in ("valid", "test"):
        entry = record["predictions"][split]
        path = run_dir / entry["path"]
        assert entry["path"] == f"predictions/{split}.parquet"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        table = pq.read_table(path).to_pylist()
        assert entry["epoch"] == record["best_epoch"] and {r["epoch"] for r in table} == {
            record["best_epoch"]
        }
        assert len(table) == entry["clips"] == info["counts"]["rows"][split]  # every clip of both workers
        assert [r["clip_id"] for r in table] == sorted(r["clip_id"] for r in table)
        assert set(table[0]) == {"clip_id", "video_id", "speaker_id", "gold", "predicted", "epoch"} | {
            f"score_{name}" for name in labels
        }
        for row in table:  # the predicted label is the best-scoring one
            assert row["predicted"] == max(labels, key=lambda name, row=row: row[f"score_{name}"])
        recomputed = classification_metrics(
            [labels.index(r["gold"]) for r in table], [labels.index(r["predicted"]) for r in table], labels
        )
        assert recomputed["macro_f1"] == pytest.approx(record[split]["macro_f1"])
        assert recomputed["confusion_matrix"] == record[split]["confusion_matrix"]


def test_worker_death_resumes_to_the_same_result(workspace, unbroken):
    run_dir, _ = unbroken
    drilled, _ = train(workspace, "drilled", "train.fail_at_epoch=1")
    a = json.loads((run_dir / "record.json").read_text())
    b = json.loads((drilled / "record.json").read_text())
    assert b["status"] == "finished" and len(b["epochs"]) == 2
    # resumed from epoch 1's checkpoint (not started again): the set-up of both starts is recorded
    assert len(b["setup_seconds"]) == 2
    epochs = sorted(
        json.loads(c.read_text())["epoch"] for c in drilled.glob("checkpoint_*/omnimer_state.json")
    )
    assert epochs == [1, 2]
    assert b["epochs"][-1]["valid"] == a["epochs"][-1]["valid"]
    assert (b["best_epoch"], b["test"]) == (a["best_epoch"], a["test"])
    assert b["epochs"][-1]["train_loss"] == pytest.approx(a["epochs"][-1]["train_loss"], rel=1e-6)


GROUP_RUNS = """
import sys

import ray

from omnimer.config import load_train_config
from omnimer.training.driver import run_trainings

ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
runs = (("g-seed1", ["train.seed=1"]), ("g-seed0", ["train.seed=0", "train.fail_at_epoch=1"]))
cfgs = [load_train_config("sweeps/configs/smoke.yaml", [*sys.argv[1:], f"run.name={n}", *x]) for n, x in runs]
for record in run_trainings(cfgs, group_name="group-g"):
    print(record.config["run"]["name"], record.status)
"""


def cached_clips(run_dir: Path) -> list[int]:
    """The clips in the worker's audio-feature cache after each epoch, from the run's log."""
    return [
        int(n)
        for n in re.findall(r"audio features cached for (\d+) clips", (run_dir / "train.log").read_text())
    ]


def test_runs_trained_by_one_worker_group_match_runs_trained_alone(workspace, unbroken):
    """Two runs in one Train run (a grid trial with --runs-per-trial 2): the second, seed 0, ends with
    the same metrics as the same config trained alone (nothing of the first run leaks into it), and
    when its worker dies after epoch 1 the restarted group resumes it from its own checkpoint without
    training the first run again."""
    root, env = workspace
    overrides = [
        f"data.path={root / 'shards'}",
        f"model.name_or_path={root / 'tiny'}",
        f"run.output_dir={root / 'runs'}",
        f"model.stage_dir={root / 'stage'}",
        "train.epochs=2",
        "train.max_steps_per_epoch=4",
        "train.batch_size=2",
    ]
    result = run(["-c", GROUP_RUNS, *overrides], env, timeout=900, command=[sys.executable])
    assert "g-seed1 finished" in result.stdout and "g-seed0 finished" in result.stdout
    alone = json.loads((unbroken[0] / "record.json").read_text())
    first = json.loads((root / "runs" / "g-seed1" / "record.json").read_text())
    second = json.loads((root / "runs" / "g-seed0" / "record.json").read_text())
    assert len(first["setup_seconds"]) == 1 and len(first["epochs"]) == 2  # not trained again
    assert len(second["setup_seconds"]) == 2 and len(second["epochs"]) == 2  # resumed after epoch 1
    assert first["wall_seconds"] > 0 and second["wall_seconds"] > 0
    assert second["epochs"][-1]["valid"] == alone["epochs"][-1]["valid"]
    assert (second["best_epoch"], second["test"]) == (alone["best_epoch"], alone["test"])
    assert second["epochs"][-1]["train_loss"] == pytest.approx(alone["epochs"][-1]["train_loss"], rel=1e-6)
    assert first["test"] != second["test"] or first["epochs"] != second["epochs"]
    # The second run found the audio features the first computed (the worker's cache outlives a run),
    # and still ended as it does alone (above).
    first_cached, second_cached = (
        cached_clips(root / "runs" / "g-seed1"),
        cached_clips(root / "runs" / "g-seed0"),
    )
    assert second_cached[0] >= first_cached[-1] > 0, (first_cached, second_cached)
    # The group's checkpoints are its own Train run's, each naming its run; the runs' dirs hold none.
    checkpoints = sorted(c for c in (root / "runs" / "group-g").glob("checkpoint_*") if c.is_dir())
    assert [json.loads((c / "run.json").read_text())["name"] for c in checkpoints] == ["g-seed0"] * 2
    assert not [c for c in (root / "runs" / "g-seed1").glob("checkpoint_*") if c.is_dir()]


def test_rerun_is_a_no_op_and_a_changed_config_is_refused(workspace, unbroken):
    run_dir, _ = unbroken
    before = (run_dir / "record.json").read_text()
    _, result = train(workspace, "unbroken")
    assert (run_dir / "record.json").read_text() == before  # finished: not trained again
    root, env = workspace
    changed = subprocess.run(
        CLI
        + [
            "train",
            "--config",
            "sweeps/configs/smoke.yaml",
            f"data.path={root / 'shards'}",
            f"model.name_or_path={root / 'tiny'}",
            f"run.output_dir={root / 'runs'}",
            "run.name=unbroken",
            "train.epochs=3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert changed.returncode == 2
    # The refusal names each key that differs, with both values (the fixture's run was shorter).
    assert "already holds a run with a different config (" in changed.stderr
    assert "train.epochs: 2 → 3" in changed.stderr and "; choose another run.name" in changed.stderr


def partial_face_targets(shards: Path, out: Path) -> Path:
    """A copy of ``shards`` whose train rows at odd positions (by clip_id) have no face target: the
    rows of the second of 2 workers, which takes ``rows[1::2]``."""
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(shards, out)
    files = sorted((out / "train").glob("*.parquet"))
    clip_ids = sorted(c for f in files for c in pq.read_table(f, columns=["clip_id"]).column(0).to_pylist())
    odd = clip_ids[1::2]
    for path in files:
        table = pq.read_table(path)
        face = pc.if_else(pc.is_in(table.column("clip_id"), pa.array(odd)), None, table.column("aux_face"))
        pq.write_table(table.set_column(table.column_names.index("aux_face"), "aux_face", face), path)
    return out


def test_zero3_saves_the_whole_adapter(workspace, tmp_path):
    """ZeRO-3 partitions the LoRA weights too; the saved adapter must hold them whole.

    The tiny model's weights all lie under cluster/deepspeed/zero3.json's persistence threshold, so
    ZeRO-3 would keep them whole on every worker; with the threshold at 0 they are partitioned as a
    7B's are, and every forward gathers them with collectives. One clip per evaluation batch splits
    the 13 test clips 7 / 6 between the workers: the evaluation must still run the same number of
    forwards on both (it aborted in gloo before the filler forwards). And the second worker's train
    rows have no face target (partial annotations): it runs a filler face forward where the first
    worker runs the real one. A worker dies after the epoch: the restarted group loads the ZeRO-3
    checkpoint (trainable weights only) before it finds nothing left to train."""
    from safetensors.torch import load_file

    zero3 = json.loads((REPO / "cluster" / "deepspeed" / "zero3.json").read_text())
    zero3["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    config = tmp_path / "zero3-partitioned.json"
    config.write_text(json.dumps(zero3))
    shards = partial_face_targets(workspace[0] / "shards", tmp_path / "shards")
    run_dir, _ = train(
        workspace,
        "zero3",
        f"train.deepspeed_config={config}",
        "train.epochs=1",
        "train.eval_batch_size=1",
        f"data.path={shards}",
        "train.fail_at_epoch=1",  # the restarted group loads the partitioned checkpoint, then ends
    )
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "finished" and record["setup_seconds"]
    assert (run_dir / "train.log").read_text().count("worker ready") == 2  # restarted, resumed
    counts = json.loads((workspace[0] / "shards" / "dataset.json").read_text())["counts"]["rows"]
    assert counts["test"] % 2 == 1  # the two workers' slices differ in length
    assert record["test"]["n"] == counts["test"]  # every clip scored once, no filler among them
    weights = load_file(str(run_dir / "best_adapter" / "adapter_model.safetensors"))
    assert weights and all(t.numel() > 0 for t in weights.values())
    assert any(float(t.abs().sum()) > 0 for name, t in weights.items() if "lora_B" in name)  # trained


FAILING_RUNS = """
import sys

import ray

from omnimer.config import load_train_config
from omnimer.training.driver import run_training

ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
trial = {"experiment": "srch", "mode": "search", "trial_id": "t"}
for name, sweep, record_failure in (("alone", None, True), ("trial", trial, False)):
    cfg = load_train_config("sweeps/configs/smoke.yaml", [*sys.argv[1:], f"run.name={name}"])
    try:
        run_training(cfg, sweep=sweep, record_failure=record_failure)
    except RuntimeError as err:
        print(f"{name} raised: {err}")
"""


def test_a_failed_run_says_so_and_a_failed_trial_is_left_to_its_sweep(workspace):
    """The resilience drill with no restart allowed: the worker group dies after epoch 1, so the fit
    fails for real. A lone run's record says `failed`, with the error. A sweep trial's record stays
    `running`: ASHA stopping a trial also kills its Train run, and the trial's driver thread can
    outlive tuner.fit(); the sweep settles the record afterwards (settle_records), here as ASHA's
    `stopped`, with the metrics of the last checkpoint."""
    from omnimer.training.record import Status, settle_run_dir

    root, env = workspace
    overrides = [
        f"data.path={root / 'shards'}",
        f"model.name_or_path={root / 'tiny'}",
        f"run.output_dir={root / 'failing'}",
        "train.num_workers=1",
        "train.epochs=2",
        "train.max_steps_per_epoch=2",
        "train.fail_at_epoch=1",
        "train.max_failures=0",
    ]
    result = run(["-c", FAILING_RUNS, *overrides], env, timeout=600, command=[sys.executable])
    for name in ("alone", "trial"):
        assert f"{name} raised: training failed:" in result.stdout
    alone = json.loads((root / "failing" / "alone" / "record.json").read_text())
    assert alone["status"] == "failed" and alone["error"] and alone["wall_seconds"] > 0
    trial = json.loads((root / "failing" / "trial" / "record.json").read_text())
    assert trial["status"] == "running" and "error" not in trial
    settled = settle_run_dir(root / "failing" / "trial", Status.STOPPED)
    assert (
        settled.status == Status.STOPPED and settled.state.best_epoch == 1 and len(settled.state.history) == 1
    )
