"""Batches and one training step on the tiny Thinker, in process (no Ray): collation, the λ=0 contract,
closed-set scoring, and the config/driver checks that must fail before any worker starts."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from tinyrows import SIZE, fresh_model, make_rows

from omnimer import losses, metrics
from omnimer.aux_tasks import AUX_TASKS, BY_NAME
from omnimer.collate import AudioFeatureCache, Batch, collate, merge_batches, pack_batches
from omnimer.config import LossConfig, ModelConfig, TrainConfig, load_train_config
from omnimer.labels import INDOMER_EMOTION
from omnimer.losses import IGNORE_INDEX
from omnimer.model.load import load_processor, load_thinker
from omnimer.model.tiny import build_tiny_model
from omnimer.tasks import MAIN, Prompting, build_task_batches, main_conversation
from omnimer.training.driver import validate_run, with_absolute_paths
from omnimer.training.engine import deepspeed_config, lr_lambda, use_environment_op_builds
from omnimer.training.evaluate import resolve_scoring
from omnimer.training.step import StepContext, filler_batch, step_losses
from omnimer.training.worker import shared_feature_cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)
    return path, load_processor(str(path))


EMOTION = Prompting("emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id")


def every_task(rows: list[dict]) -> dict:
    return build_task_batches(rows, EMOTION, AUX_TASKS)


def test_collate_labels_only_the_answer(tiny):
    _, processor = tiny
    rows = make_rows(3)
    convs = every_task(rows)
    media = {r["clip_id"]: r for r in rows}
    main = collate(processor, convs[MAIN], media, frame_size=SIZE)
    tokenizer = processor.tokenizer
    for row in range(3):
        answer = tokenizer.decode(main.inputs["input_ids"][row][main.labels[row] != IGNORE_INDEX])
        assert answer == f"{rows[row]['emotion']}<|im_end|>\n"
    video_token = tokenizer.convert_tokens_to_ids("<|VIDEO|>")
    assert int((main.inputs["input_ids"][0] == video_token).sum()) == 8  # not 288: size pinned
    # each clip keeps its own sampling rate: 2 frames per temporal patch / fps
    assert main.inputs["video_second_per_grid"].tolist() == pytest.approx([0.5, 0.75, 0.5])
    assert main.class_index.tolist() == [0, 1, 2]
    face = collate(processor, convs["face"], media, frame_size=SIZE)
    assert "input_features" not in face.inputs and "pixel_values_videos" in face.inputs
    text = collate(processor, convs["text"], media, frame_size=SIZE)
    assert set(text.inputs) == {"input_ids", "attention_mask"}


def test_interleaved_audio_in_video_groups_clips_by_fps(tiny):
    path, processor = tiny
    rows = make_rows(4)
    in_video = Prompting("emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id", audio_in_video=True)
    convs = [main_conversation(r, in_video, with_answer=True) for r in rows]
    batch = collate(processor, convs, {r["clip_id"]: r for r in rows}, frame_size=SIZE, audio_in_video=True)
    assert batch.inputs["use_audio_in_video"] is True
    # grouped by sampling rate (2.67 fps, then 4 fps), each group in its original order
    assert batch.clip_ids == [rows[1]["clip_id"], rows[3]["clip_id"], rows[0]["clip_id"], rows[2]["clip_id"]]
    assert batch.class_index.tolist() == [1, 0, 0, 2]
    model = load_thinker(ModelConfig(name_or_path=str(path), dtype="float32"))
    out = model(**batch.inputs, use_cache=False)
    assert torch.isfinite(out.logits).all()


def test_audio_feature_cache_reuses_features_and_leaves_logits_unchanged(tiny):
    path, processor = tiny
    cached = load_processor(str(path))
    cache = AudioFeatureCache.install(cached, max_bytes=2**26)
    rows = make_rows(4)
    media = {r["clip_id"]: r for r in rows}
    convs = build_task_batches(rows, EMOTION, (BY_NAME["prosody"],))
    model = load_thinker(ModelConfig(name_or_path=str(path), dtype="float32")).eval()
    for task in (MAIN, "prosody", MAIN):
        plain = collate(processor, convs[task], media, frame_size=SIZE)
        fast = collate(cached, convs[task], media, frame_size=SIZE)
        assert torch.equal(plain.inputs["input_ids"], fast.inputs["input_ids"])
        # padded to the longest clip (1.5 s = 150 frames), not to Whisper's 30 s
        assert fast.inputs["input_features"].shape == (4, 128, 150)
        assert plain.inputs["input_features"].shape == (4, 128, 3000)
        with torch.no_grad():
            assert torch.equal(model(**plain.inputs).logits, model(**fast.inputs).logits)
    # four clips extracted once; the prosody task and the second main batch reuse them
    assert (cache.misses, cache.hits, len(cache.entries)) == (4, 8, 4)


def test_audio_feature_cache_stays_within_its_memory_bound(tiny):
    path, _ = tiny
    processor = load_processor(str(path))
    one_clip = 128 * 150 * 4  # bytes of a 1.5 s clip's features
    cache = AudioFeatureCache.install(processor, max_bytes=2 * one_clip)
    rows = make_rows(6)
    media = {r["clip_id"]: r for r in rows}
    convs = build_task_batches(rows, EMOTION, ())
    collate(processor, convs[MAIN], media, frame_size=SIZE)
    assert cache.bytes <= 2 * one_clip and len(cache.entries) == 2
    assert AudioFeatureCache.install(load_processor(str(path)), max_bytes=0) is None


def test_a_workers_runs_share_one_audio_feature_cache_per_checkpoint_and_size(tiny):
    """A later run of a worker finds the features its earlier runs computed: its new processor gets
    the same cache, unless the checkpoint or the size differs; a 0 MB cache is none, and none is kept."""
    path, _ = tiny
    caches: dict = {}
    first, later = load_processor(str(path)), load_processor(str(path))
    cache = shared_feature_cache(first, str(path), 8, caches)
    assert shared_feature_cache(later, str(path), 8, caches) is cache
    assert later.feature_extractor is cache and first.feature_extractor is cache
    assert shared_feature_cache(load_processor(str(path)), str(path), 16, caches) is not cache
    assert shared_feature_cache(load_processor(str(path)), "other", 8, caches) is not cache
    off = load_processor(str(path))
    assert shared_feature_cache(off, str(path), 0, caches) is None
    assert not isinstance(off.feature_extractor, AudioFeatureCache) and len(caches) == 3


class CountingModel(torch.nn.Module):
    """Counts forward calls and the video clips they carry."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.videos = model, 0, 0

    def forward(self, **inputs):
        self.calls += 1
        if "video_grid_thw" in inputs:
            self.videos += inputs["video_grid_thw"].shape[0]
        return self.model(**inputs)


def losses_of_step(model, processor, rows, loss_cfg: LossConfig):
    rebalancing = losses.build_rebalancing(loss_cfg, [10, 5, 5, 1, 1, 1, 1])
    first_ids = resolve_scoring(processor.tokenizer, INDOMER_EMOTION, "first_token").first_ids
    ctx = StepContext(processor, EMOTION, first_ids, rebalancing, SIZE, "cpu")
    return step_losses(model, rows, TrainConfig(loss=loss_cfg), ctx)


def test_logit_adjust_step_uses_the_label_token_scores(tiny):
    """logit_adjust trains on the label-restricted first-token scores, shifted by tau * log prior."""
    path, processor = tiny
    rows = make_rows(3)
    model = fresh_model(path)
    plain = LossConfig(
        scheme="logit_adjust", tau=0.0, aux_weight_text=0, aux_weight_face=0, aux_weight_prosody=0
    )
    adjusted = LossConfig(
        scheme="logit_adjust", tau=1.0, aux_weight_text=0, aux_weight_face=0, aux_weight_prosody=0
    )
    with torch.no_grad():
        _, parts_plain, _ = losses_of_step(model, processor, rows, plain)
        _, parts_adjusted, _ = losses_of_step(model, processor, rows, adjusted)
    assert torch.isfinite(parts_plain["main"]) and torch.isfinite(parts_adjusted["main"])
    assert float(parts_plain["main"]) != float(parts_adjusted["main"])


def test_face_weight_zero_never_builds_or_runs_the_face_task(tiny):
    path, processor = tiny
    rows = make_rows(2)
    counting = CountingModel(fresh_model(path))
    _, parts, tokens_all = losses_of_step(counting, processor, rows, LossConfig())
    assert counting.videos == 4  # main's 2 clips + face's 2
    counting.videos = 0
    _, parts_no_face, tokens = losses_of_step(counting, processor, rows, LossConfig(aux_weight_face=0.0))
    assert counting.videos == 2  # only main still sees the video
    assert "face" not in parts_no_face and "face" in parts
    assert tokens < tokens_all


def test_a_step_whose_rows_lack_an_enabled_tasks_target_adds_no_loss_for_it(tiny):
    """Partial annotations: no row of the step has a face target although λ_face > 0. The step adds a
    zero face loss (it raised before), runs no face forward on one worker, and trains as λ_face = 0;
    its logged parts have no face loss, so the epoch's mean face loss counts only steps that had one."""
    path, processor = tiny
    rows = [{**row, "aux_face": None} for row in make_rows(2)]
    counting = CountingModel(fresh_model(path))
    total, parts, _ = losses_of_step(counting, processor, rows, LossConfig())
    assert "face" not in parts and counting.videos == 2  # main's 2 clips only
    reference, reference_parts, _ = losses_of_step(
        fresh_model(path), processor, rows, LossConfig(aux_weight_face=0.0)
    )
    assert torch.allclose(total, reference) and float(parts["text"]) == pytest.approx(
        float(reference_parts["text"])
    )


def test_a_filler_batch_runs_the_tasks_forward_with_every_label_ignored(tiny):
    """What a worker runs under ZeRO-3 for a task another worker's rows have a target for."""
    _, processor = tiny
    rows = [{**row, "aux_face": None} for row in make_rows(2)]
    batch = filler_batch(BY_NAME["face"], processor, {r["clip_id"]: r for r in rows}, EMOTION, SIZE)
    assert batch.task == "face" and len(batch.clip_ids) == 1
    assert batch.inputs["pixel_values_videos"].numel() > 0 and "input_features" not in batch.inputs
    assert bool((batch.labels == IGNORE_INDEX).all())


def test_packed_aux_tasks_give_the_losses_and_gradients_of_separate_forwards(tiny):
    path, processor = tiny
    rows = make_rows(3)
    media = {r["clip_id"]: r for r in rows}
    convs = every_task(rows)
    aux = [collate(processor, convs[t], media, frame_size=SIZE) for t in ("text", "face", "prosody")]
    assert [len(g) for g in pack_batches(aux)] == [3]  # similar lengths: one forward
    model = fresh_model(path)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    apart = {b.task: losses.token_loss(model(**b.inputs).logits, b.labels) for b in aux}
    merged, spans = merge_batches(aux, processor.tokenizer.pad_token_id)
    logits = model(**merged.inputs).logits
    packed = {t: losses.token_loss(logits[rows], merged.labels[rows]) for t, rows in spans.items()}
    assert packed.keys() == apart.keys() and merged.inputs["video_grid_thw"].shape[0] == 3
    for task in apart:
        torch.testing.assert_close(packed[task], apart[task], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(sum(packed.values())), grads(sum(apart.values())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_packing_keeps_a_long_task_apart():
    def batch(task, rows, width):
        ids = torch.ones((rows, width), dtype=torch.long)
        return Batch(task, {"input_ids": ids, "attention_mask": ids}, ids, [task] * rows, None)

    short, mid, long = batch("text", 4, 100), batch("prosody", 4, 110), batch("face", 4, 300)
    assert [[b.task for b in g] for g in pack_batches([long, short, mid])] == [
        ["text", "prosody"],
        ["face"],
    ]
    main = Batch("main", short.inputs, short.labels, ["m"] * 4, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="the main task keeps its own forward"):
        merge_batches([main, mid], 0)


def train_steps(path, processor, rows, loss_cfg, steps=3):
    model = fresh_model(path, seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        total, _, _ = losses_of_step(model, processor, rows, loss_cfg)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_all_aux_weights_zero_equals_main_only_bit_for_bit(tiny):
    path, processor = tiny
    rows = make_rows(3)
    zero = LossConfig(aux_weight_text=0.0, aux_weight_face=0.0, aux_weight_prosody=0.0)
    with_zero_weights = train_steps(path, processor, rows, zero)
    # main-only: the same rows with no aux targets at all, so no aux task could exist
    bare = [dict(r, aux_keywords=None, aux_face=None, aux_prosody=None) for r in rows]
    main_only = train_steps(path, processor, bare, zero)
    assert with_zero_weights.keys() == main_only.keys()
    for key in main_only:
        assert torch.equal(with_zero_weights[key], main_only[key]), key
    with_aux = train_steps(path, processor, rows, LossConfig())
    assert any(not torch.equal(with_aux[k], main_only[k]) for k in main_only)  # the λ > 0 run differs


def test_closed_set_scoring_matches_full_answer_likelihood(tiny):
    """After a few steps on the main task, first-token scoring picks the label with the best full answer."""
    path, processor = tiny
    rows = make_rows(6)
    model = fresh_model(path)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    zero = LossConfig(aux_weight_text=0.0, aux_weight_face=0.0, aux_weight_prosody=0.0)
    for _ in range(8):
        total, _, _ = losses_of_step(model, processor, rows, zero)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    scoring = resolve_scoring(processor.tokenizer, INDOMER_EMOTION, "first_token")
    verbalizers, first_ids = scoring.verbalizers, scoring.first_ids
    prompting = Prompting("emotion", INDOMER_EMOTION, verbalizers, "id")
    media = {r["clip_id"]: r for r in rows}
    prompts = [main_conversation(r, prompting, with_answer=False) for r in rows]
    batch = collate(processor, prompts, media, frame_size=SIZE, with_labels=False)
    with torch.no_grad():
        scores = metrics.verbalizer_scores(
            model(**batch.inputs).logits, batch.inputs["attention_mask"], first_ids
        )
        closed = metrics.closed_set_predict(scores)
        # full-answer log-likelihood of every label for every clip
        full = torch.zeros(len(rows), len(verbalizers))
        for c in range(len(verbalizers)):
            answered = [main_conversation(r, prompting, with_answer=True) for r in rows]
            for conv in answered:
                conv.messages[-1]["content"][0]["text"] = verbalizers[c]
            b = collate(processor, answered, media, frame_size=SIZE)
            # the answer's likelihood is that of the label word's tokens (the end marker is not the answer)
            n_tokens = len(processor.tokenizer(verbalizers[c], add_special_tokens=False).input_ids)
            labels = b.labels.clone()
            for row in range(len(rows)):
                positions = (labels[row] != IGNORE_INDEX).nonzero().flatten()
                labels[row, positions[n_tokens:]] = IGNORE_INDEX
            full[:, c] = metrics.sequence_logprob(model(**b.inputs).logits, labels)
    assert closed.tolist() == full.argmax(dim=1).tolist()


def test_deepspeed_configs_are_consistent():
    """The ZeRO-2/ZeRO-3 configs (GPU path: bf16 + NCCL) complete to consistent DeepSpeed configs."""
    for stage in (2, 3):
        for gpu in (False, True):
            cfg = load_train_config(
                None,
                [
                    f"train.deepspeed_config=cluster/deepspeed/zero{stage}.json",
                    f"train.use_gpu={str(gpu).lower()}",
                    "train.batch_size=3",
                    "train.grad_accum=2",
                ],
            )
            ds = deepspeed_config(cfg, world_size=8)
            assert ds["zero_optimization"]["stage"] == stage
            assert (
                ds["train_batch_size"]
                == ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * 8
            )
            assert ds["bf16"]["enabled"] is gpu and "fp16" not in ds
            assert ds["gradient_clipping"] == cfg.train.max_grad_norm
    zero3 = json.loads(open("cluster/deepspeed/zero3.json").read())
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_deepspeed_builds_its_ops_into_this_environment_with_its_tools(tmp_path, monkeypatch):
    """A venv's workers build and find DeepSpeed's JIT ops in the venv, not in the user's shared
    ~/.cache, where another checkout's build (same op, other source paths) forces a rebuild; and they
    build with the venv's ninja whatever their PATH, since the system's ninja and the venv's rebuild
    the op for each other."""
    from torch.utils.cpp_extension import _get_build_directory

    venv = tmp_path / "venv"
    for bin_dir in (venv / "bin", tmp_path / "system"):  # the venv's ninja and the system's
        bin_dir.mkdir(parents=True)
        (bin_dir / "ninja").write_text("#!/bin/sh\n")
        (bin_dir / "ninja").chmod(0o755)
    system_path = os.pathsep.join([str(tmp_path / "system"), "/usr/bin", "/bin"])
    monkeypatch.setenv("PATH", system_path)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "unset below")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setattr(sys, "prefix", str(venv))
    use_environment_op_builds()
    build = Path(_get_build_directory("deepspeed_shm_comm", verbose=False))
    assert build.is_relative_to(venv / "torch_extensions")
    assert shutil.which("ninja") == str(venv / "bin" / "ninja")
    assert os.environ["PATH"] == os.pathsep.join([str(venv / "bin"), system_path])
    use_environment_op_builds()  # once is enough
    assert os.environ["PATH"] == os.pathsep.join([str(venv / "bin"), system_path])

    # A directory the user (or the cluster's runtime env) chose is kept; a venv without ninja leaves
    # PATH alone.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "chosen"))
    monkeypatch.setenv("PATH", system_path)
    (venv / "bin" / "ninja").unlink()
    use_environment_op_builds()
    assert Path(_get_build_directory("deepspeed_shm_comm", verbose=False)).is_relative_to(tmp_path / "chosen")
    assert os.environ["PATH"] == system_path

    # Outside a virtual environment, torch's defaults stay.
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    use_environment_op_builds()
    assert "TORCH_EXTENSIONS_DIR" not in os.environ and os.environ["PATH"] == system_path


def test_a_checkpoint_is_loaded_whole_for_its_trainable_weights_and_refused_without_one():
    """Checkpoints leave the frozen weights out (the worker loads them from the model): a load keeps
    them, and refuses a checkpoint that lacks a trainable weight."""
    from omnimer.training.checkpoint import load_trainable

    layer = torch.nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    bias, weight = layer.bias.detach().clone(), torch.ones(2, 2)
    load_trainable({"weight": weight}, layer)
    assert torch.equal(layer.weight.detach(), weight) and torch.equal(layer.bias.detach(), bias)
    message = r"the checkpoint lacks 1 trainable weight\(s\) of this model \(weight, \.\.\.\): it was written"
    with pytest.raises(RuntimeError, match=message):
        load_trainable({"bias": torch.zeros(2)}, layer)


def test_warmup_cosine_schedule():
    factor = lr_lambda(100, 0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5, abs=0.02)
    assert factor(99) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.scheme=balanced"], "loss.scheme 'balanced' is not one of none, inverse_freq"),
        (["loss.aux_weight_face=-0.5"], "loss.aux_weight_face must be >= 0, got -0.5"),
        (["model.lora.rank=0"], "lora.rank must be an integer >= 1, got 0"),
        (
            ["data.audio_feature_cache_mb=-1"],
            "data.audio_feature_cache_mb must be an integer >= 0, got -1",
        ),
        (["train.epoch=2"], "unknown config key 'train.epoch'; did you mean 'train.epochs'?"),
    ],
)
def test_bad_config_is_refused_at_construction(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_train_config(None, overrides)


def test_missing_dataset_and_label_set_mismatch(tmp_path, tiny):
    path, _ = tiny
    cfg = load_train_config(None, [f"data.path={tmp_path / 'none'}", f"model.name_or_path={path}"])
    with pytest.raises(ValueError, match=r"data.path '.*none' does not exist; run `omnimer ingest` first"):
        validate_run(cfg)
    ds = tmp_path / "ds"
    ds.mkdir()
    info = {
        "schema_version": 1,
        "format": "indomer",
        "label_sets": {"emotion": INDOMER_EMOTION.to_json(), "sentiment": None},
        "counts": {"rows": {"train": 3}},
    }
    (ds / "dataset.json").write_text(json.dumps(info))
    cfg = load_train_config(
        None, [f"data.path={ds}", f"model.name_or_path={path}", "data.label_set=meld-emotion"]
    )
    with pytest.raises(
        ValueError,
        match="data.label_set 'meld-emotion' does not match the dataset's emotion label set "
        "'indomer-emotion'",
    ):
        validate_run(cfg)
    cfg = load_train_config(None, [f"data.path={ds}", f"model.name_or_path={tmp_path / 'nomodel'}"])
    with pytest.raises(ValueError, match="model.name_or_path: model directory .*nomodel' does not exist"):
        validate_run(cfg)
    cfg = load_train_config(None, [f"data.path={ds}", f"model.name_or_path={path}", "data.target=sentiment"])
    with pytest.raises(ValueError, match="the dataset has no sentiment labels"):
        validate_run(cfg)


def test_run_paths_are_made_absolute_and_a_file_uri_is_a_local_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = with_absolute_paths(load_train_config(None, ["run.output_dir=runs/train", "data.path=shards"]))
    assert (cfg.run.output_dir, cfg.data.path) == (str(tmp_path / "runs/train"), str(tmp_path / "shards"))
    cfg = with_absolute_paths(load_train_config(None, [f"run.output_dir={(tmp_path / 'out').as_uri()}"]))
    assert cfg.run.output_dir == str(tmp_path / "out")
    cfg = with_absolute_paths(load_train_config(None, ["run.output_dir=s3://bucket/runs"]))
    assert cfg.run.output_dir == "s3://bucket/runs"


def test_runs_one_worker_group_cannot_train_together_are_refused():
    """run_trainings trains its runs in one worker group: they must share its layout and output dir."""
    from omnimer.training.driver import check_one_group

    def cfg(name, *overrides):
        return load_train_config(None, [f"run.name={name}", "run.output_dir=/tmp/runs", *overrides])

    check_one_group([cfg("a"), cfg("b", "train.seed=1", "loss.aux_weight_face=0")])  # λ and seed may differ
    with pytest.raises(ValueError, match="no run to train"):
        check_one_group([])
    with pytest.raises(
        ValueError,
        match=r"run 'b' has train.num_workers 1 but 'a' has 2: runs trained by one worker group share its "
        r"layout; train them separately",
    ):
        check_one_group([cfg("a", "train.num_workers=2"), cfg("b", "train.num_workers=1")])
    with pytest.raises(
        ValueError, match=r"run 'b' writes under '/tmp/other' but 'a' under '/tmp/runs': runs trained by one"
    ):
        check_one_group([cfg("a"), cfg("b", "run.output_dir=/tmp/other")])
