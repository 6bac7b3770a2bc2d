"""Staging a checkpoint on node-local disk (``model.stage_dir``): processes racing for one copy, reuse,
and the copies that must not be reused."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from omnimer.config import ModelConfig
from omnimer.model.staging import MANIFEST, stage_checkpoint


def fake_checkpoint(root) -> dict[str, bytes]:
    """A checkpoint-shaped directory (a config, two weight files, a nested tokenizer file)."""
    files = {
        "config.json": b'{"model_type": "qwen2_5_omni_thinker"}',
        "model-00001-of-00002.safetensors": os.urandom(3 * 2**20),
        "model-00002-of-00002.safetensors": os.urandom(2**20 + 7),
        "tokenizer/vocab.json": b'{"a": 0}',
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _race(source: str, stage_dir: str, start, queue) -> None:
    start.wait()
    staged = stage_checkpoint(source, stage_dir)
    queue.put((staged.path, staged.copied))


def test_racing_workers_make_one_copy_and_all_load_it(tmp_path):
    """Six processes on one node ask for the same checkpoint at once: exactly one copies, all get the
    same complete directory, and nothing half-written is left."""
    source, stage = tmp_path / "shared" / "Qwen2.5-Omni-7B", tmp_path / "local"
    source.mkdir(parents=True)
    files = fake_checkpoint(source)
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_race, args=(str(source), str(stage), start, queue)) for _ in range(6)]
    for worker in workers:
        worker.start()
    start.set()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    paths = {path for path, _ in results}
    assert len(paths) == 1 and sum(copied for _, copied in results) == 1
    staged = tmp_path / "local" / paths.pop().rsplit("/", 1)[1]
    assert staged.name.startswith("Qwen2.5-Omni-7B-")
    for name, data in files.items():
        assert (staged / name).read_bytes() == data
    manifest = json.loads((staged / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(files)
    assert [p.name for p in stage.iterdir() if p.is_dir()] == [staged.name]  # no temporary dir left


def test_a_copy_is_reused_until_it_or_its_source_changes(tmp_path):
    source, stage = tmp_path / "shared" / "m", tmp_path / "local"
    source.mkdir(parents=True)
    fake_checkpoint(source)
    first = stage_checkpoint(str(source), stage)
    assert first.copied and not stage_checkpoint(str(source), stage).copied
    # a staged file truncated (a full disk, a partial manual copy): copied again
    weights = os.path.join(first.path, "model-00001-of-00002.safetensors")
    with open(weights, "r+b") as fh:
        fh.truncate(10)
    again = stage_checkpoint(str(source), stage)
    assert again.copied and os.path.getsize(weights) == 3 * 2**20
    # the source re-exported (another size): copied again
    (source / "tokenizer" / "vocab.json").write_bytes(b'{"a": 0, "b": 1}')
    assert stage_checkpoint(str(source), stage).copied
    assert (
        stage / os.path.basename(first.path) / "tokenizer" / "vocab.json"
    ).read_bytes() == b'{"a": 0, "b": 1}'


def test_a_dead_copiers_leftovers_are_not_used(tmp_path):
    """A worker killed mid-copy leaves only its temporary dir (the rename never happened): the next
    worker removes it and copies afresh."""
    source, stage = tmp_path / "shared" / "m", tmp_path / "local"
    source.mkdir(parents=True)
    fake_checkpoint(source)
    key = os.path.basename(stage_checkpoint(str(source), stage).path)
    (stage / key / MANIFEST).unlink()  # as if the copy had not completed
    leftover = stage / f".{key}.tmp-999999"
    leftover.mkdir()
    (leftover / "config.json").write_text("{")
    staged = stage_checkpoint(str(source), stage)
    assert staged.copied and not leftover.exists()


def test_distinct_sources_with_one_name_get_distinct_copies(tmp_path):
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for path in (a, b):
        path.mkdir(parents=True)
        fake_checkpoint(path)
    assert stage_checkpoint(str(a), tmp_path / "s").path != stage_checkpoint(str(b), tmp_path / "s").path


def test_stage_dir_is_part_of_the_model_config():
    assert ModelConfig().stage_dir == ""
    with pytest.raises(ValueError, match="unknown config key 'model.stage'"):
        from omnimer.config import TrainConfig

        TrainConfig.from_dict({"model": {"stage": "/local"}})
