"""Closed-set scoring of whole answers (``eval.scoring``): the KV-cache path equals full forwards, the
method a run resolves to with the tiny and the real Qwen2.5 vocabularies, and the refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import SHARED
from tinyrows import SIZE, fresh_model, make_rows

from omnimer import metrics
from omnimer.collate import collate
from omnimer.config import TrainConfig
from omnimer.labels import INDOMER_EMOTION, LabelSet
from omnimer.losses import IGNORE_INDEX
from omnimer.model.load import load_processor
from omnimer.model.tiny import build_tiny_model
from omnimer.tasks import Prompting, main_conversation
from omnimer.training.driver import check_scoring, scoring_key
from omnimer.training.evaluate import Evaluator, resolve_scoring

QWEN_TOKENIZER = SHARED / "tokenizers" / "qwen2.5-bpe"
# The English display names: 1 to 5 tokens each with the tiny tokenizer ("happiness" is h|app|...),
# as label words are with the real Qwen2.5 vocabulary.
MULTI_TOKEN = dataclasses.replace(INDOMER_EMOTION, verbalizers=INDOMER_EMOTION.display)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)
    return path, load_processor(str(path))


def full_answer_logprobs(model, processor, rows, prompting: Prompting, token_ids) -> torch.Tensor:
    """``[B, C]`` in the order of ``rows``: for every label, a full forward of prompt + verbalizer +
    end of turn, summed with :func:`omnimer.metrics.sequence_logprob` over those answer tokens (the
    newline after the end of turn is left out)."""
    media = {r["clip_id"]: r for r in rows}
    scores = torch.zeros(len(rows), len(prompting.verbalizers))
    for c, word in enumerate(prompting.verbalizers):
        answered = [main_conversation(r, prompting, with_answer=True) for r in rows]
        for conv in answered:
            conv.messages[-1]["content"][0]["text"] = word
        batch = collate(processor, answered, media, frame_size=SIZE, audio_in_video=prompting.audio_in_video)
        labels = batch.labels.clone()
        for row in range(len(rows)):
            positions = (labels[row] != IGNORE_INDEX).nonzero().flatten()
            labels[row, positions[len(token_ids[c]) + 1 :]] = IGNORE_INDEX
        # collate groups clips by frame rate: put its rows back in the order of ``rows``
        order = [batch.clip_ids.index(r["clip_id"]) for r in rows]
        scores[:, c] = metrics.sequence_logprob(model(**batch.inputs).logits, labels)[order]
    return scores


@pytest.mark.parametrize("audio_in_video", [False, True])
def test_sequence_scoring_on_the_kv_cache_equals_full_forwards(tiny, audio_in_video):
    """Multi-token verbalizers, clips of two lengths (different prompt widths, left padding, two
    frame rates), video and audio: the Evaluator's two-forward scores equal one full forward of
    prompt + answer per label, to float32 rounding."""
    path, processor = tiny
    rows = make_rows(5)
    rows[2]["text"] += " Tambahan kalimat yang cukup panjang supaya lebarnya berbeda."
    scoring = resolve_scoring(processor.tokenizer, MULTI_TOKEN, "sequence")
    assert max(len(ids) for ids in scoring.token_ids) >= 3, "the test needs multi-token verbalizers"
    prompting = Prompting("emotion", MULTI_TOKEN, scoring.verbalizers, "id", audio_in_video)
    model = fresh_model(path)
    # A few optimizer steps on random directions, so that the adapter is not the identity.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.eval()
    evaluator = Evaluator(processor, prompting, scoring, SIZE, eval_batch_size=4)
    with torch.no_grad():
        predictions = evaluator.predict(model, rows, "cpu")
        expected = full_answer_logprobs(model, processor, rows, prompting, scoring.token_ids)
    by_clip = dict(zip(predictions.clip_id, predictions.scores, strict=True))
    got = torch.tensor([by_clip[r["clip_id"]] for r in rows])
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-5)
    order = [r["clip_id"] for r in rows]
    assert list(predictions.predicted) == [
        int(expected[order.index(c)].argmax()) for c in predictions.clip_id
    ]


def test_continuation_logprobs_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"is not \(B \* C, L\) = \(6, 3\)"):
        metrics.continuation_logprobs(
            torch.zeros(2, 10),
            torch.zeros(4, 3, 10),
            torch.zeros(3, 3, dtype=torch.long),
            torch.tensor([1, 2, 3]),
        )
    with pytest.raises(ValueError, match=r"lengths \[0, 2, 3\] must lie in \[1, 3\]"):
        metrics.continuation_logprobs(
            torch.zeros(2, 10),
            torch.zeros(6, 3, 10),
            torch.zeros(3, 3, dtype=torch.long),
            torch.tensor([0, 2, 3]),
        )


def test_auto_scoring_with_the_tiny_vocabulary(tiny):
    """Every IndoMER label is one token of the tiny vocabulary: auto keeps first-token scoring (the
    demo's numbers do not move); the English names (up to 5 tokens) get whole-answer scoring."""
    _, processor = tiny
    single = resolve_scoring(processor.tokenizer, INDOMER_EMOTION, "auto")
    assert single.method == "first_token" and single.verbalizers == INDOMER_EMOTION.names
    assert len(set(single.first_ids)) == 7
    multi = resolve_scoring(processor.tokenizer, MULTI_TOKEN, "auto")
    assert multi.method == "sequence" and multi.requested == "auto"
    record = multi.to_json()
    assert record["verbalizers"] == list(INDOMER_EMOTION.display)
    assert record["end_of_turn_id"] == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert [len(ids) for ids in record["token_ids"]] == [
        len(processor.tokenizer(w, add_special_tokens=False).input_ids) for w in INDOMER_EMOTION.display
    ]


@pytest.mark.shared
@pytest.mark.skipif(not (QWEN_TOKENIZER / "tokenizer.json").is_file(), reason=f"no {QWEN_TOKENIZER}")
def test_real_qwen_vocabulary_scores_whole_answers():
    """With the real Qwen2.5 vocabulary the IndoMER label words are 2 to 5 tokens: auto scores whole
    answers, and the record keeps every token of every verbalizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(QWEN_TOKENIZER))
    scoring = resolve_scoring(tokenizer, INDOMER_EMOTION, "auto")
    assert scoring.method == "sequence" and scoring.verbalizers == INDOMER_EMOTION.names
    lengths = dict(zip(INDOMER_EMOTION.names, map(len, scoring.token_ids), strict=True))
    assert lengths == {
        "netral": 2,
        "kebahagiaan": 5,
        "kesedihan": 3,
        "kemarahan": 4,
        "jijik": 3,
        "ketakutan": 3,
        "surprise": 2,
    }
    assert tokenizer.decode(list(scoring.token_ids[1])) == "kebahagiaan"
    assert scoring.end_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert scoring.first_ids is not None  # distinct first tokens: logit_adjust stays possible
    first = resolve_scoring(tokenizer, INDOMER_EMOTION, "first_token")
    assert first.method == "first_token" and first.first_ids == tuple(ids[0] for ids in scoring.token_ids)


def test_verbalizers_no_method_can_tell_apart_are_refused(tiny):
    _, processor = tiny
    twins = LabelSet("twins", "emotion", ("a", "b"), ("x", "y"), ("senang", "senang"))
    with pytest.raises(ValueError, match=r"verbalizers of 'a' and 'b' tokenize to the same tokens"):
        resolve_scoring(processor.tokenizer, twins, "sequence")
    with pytest.raises(ValueError, match="set eval.scoring: sequence to score whole answers"):
        resolve_scoring(processor.tokenizer, dataclasses.replace(twins, display=("x", "x")), "first_token")


def test_driver_refuses_logit_adjust_when_first_tokens_collide(tiny):
    """Labels whose words share a first token: whole-answer scoring tells them apart, but the
    logit_adjust loss (which shifts first-token scores) cannot, and the driver says so."""
    path, processor = tiny
    names = ["senangsekali", "senangbiasa", "netral"]
    ids = [processor.tokenizer(w, add_special_tokens=False).input_ids for w in names]
    assert ids[0][0] == ids[1][0] and ids[0] != ids[1]
    info = {"label_sets": {"emotion": {"key": "k", "task": "emotion", "names": names, "display": names}}}
    cfg = TrainConfig.from_dict({"model": {"name_or_path": str(path)}})
    scoring = check_scoring(cfg, info)
    assert scoring["method"] == "sequence" and scoring["first_token_ids"] is None
    adjusted = TrainConfig.from_dict(
        {"model": {"name_or_path": str(path)}, "loss": {"scheme": "logit_adjust"}}
    )
    with pytest.raises(ValueError, match="loss.scheme logit_adjust adjusts each label's first answer token"):
        check_scoring(adjusted, info)
    first_token = TrainConfig.from_dict(
        {"model": {"name_or_path": str(path)}, "eval": {"scoring": "first_token"}}
    )
    with pytest.raises(
        ValueError, match=r"eval.scoring first_token: no verbalizers with distinct first tokens"
    ):
        check_scoring(first_token, info)


def test_a_scoring_resolved_once_serves_the_runs_it_was_resolved_for(tiny, monkeypatch):
    """A sweep resolves its scoring once: a run with the same model, label set and eval.scoring takes
    it without loading the tokenizer, the logit_adjust refusal still reads it, and a run with another
    eval.scoring resolves its own."""
    import omnimer.model.load

    path, processor = tiny
    names = ["senangsekali", "senangbiasa", "netral"]  # two share a first token
    info = {"label_sets": {"emotion": {"key": "k", "task": "emotion", "names": names, "display": names}}}
    cfg = TrainConfig.from_dict({"model": {"name_or_path": str(path)}})
    resolved = {"for": scoring_key(cfg, info), "scoring": check_scoring(cfg, info)}

    def no_tokenizer(name_or_path):
        raise AssertionError("the tokenizer was loaded again")

    monkeypatch.setattr(omnimer.model.load, "load_processor", no_tokenizer)
    assert check_scoring(cfg, info, resolved) == resolved["scoring"]
    model = {"name_or_path": str(path)}
    adjusted = TrainConfig.from_dict({"model": model, "loss": {"scheme": "logit_adjust"}})
    with pytest.raises(ValueError, match="loss.scheme logit_adjust adjusts each label's first answer token"):
        check_scoring(adjusted, info, resolved)
    monkeypatch.setattr(omnimer.model.load, "load_processor", lambda name_or_path: processor)
    sequence = TrainConfig.from_dict({"model": model, "eval": {"scoring": "sequence"}})
    assert check_scoring(sequence, info, resolved)["requested"] == "sequence"


def test_config_rejects_an_unknown_scoring_method():
    with pytest.raises(
        ValueError, match="eval.scoring must be one of auto, sequence, first_token, got 'beam'"
    ):
        TrainConfig.from_dict({"eval": {"scoring": "beam"}})
