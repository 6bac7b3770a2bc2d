"""Metrics against scikit-learn, closed-set scoring against full answer likelihoods, model selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from omnimer.metrics import (
    best_epoch,
    check_distinct_first_tokens,
    classification_metrics,
    closed_set_predict,
    first_answer_logits,
    last_token_logits,
    score_label_tokens,
    sequence_logprob,
    verbalizer_scores,
)

# ---------------------------------------------------------------------------------------------------
# classification_metrics == scikit-learn


def random_case(rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels of 2..9 classes; y_true and y_pred each drawn from a random subset of them, so some
    classes are absent from y_true, from y_pred, or from both."""
    num_classes = int(rng.integers(2, 10))
    labels = [f"class{c}" for c in range(num_classes)]
    n = int(rng.integers(1, 60))
    true_classes = rng.choice(num_classes, size=int(rng.integers(1, num_classes + 1)), replace=False)
    pred_classes = rng.choice(num_classes, size=int(rng.integers(1, num_classes + 1)), replace=False)
    y_true = rng.choice(true_classes, size=n)
    # Mostly-right predictions exercise high scores; the rest are random.
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.choice(pred_classes, size=n))
    return labels, y_true, y_pred


@pytest.mark.parametrize("seed", range(50))
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels, y_true, y_pred = random_case(rng)
    everything = list(range(len(labels)))
    names_true = [labels[i] for i in y_true]
    names_pred = [labels[i] for i in y_pred]
    metrics = classification_metrics(names_true, names_pred, labels)

    def sk_f1(average):
        return f1_score(y_true, y_pred, labels=everything, average=average, zero_division=0)

    assert metrics["n"] == len(y_true)
    assert metrics["macro_f1"] == pytest.approx(sk_f1("macro"), abs=1e-12)
    assert metrics["weighted_f1"] == pytest.approx(sk_f1("weighted"), abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=everything, zero_division=0
    )
    assert list(metrics["per_class_f1"].values()) == pytest.approx(f1.tolist(), abs=1e-12)
    assert list(metrics["per_class_precision"].values()) == pytest.approx(precision.tolist(), abs=1e-12)
    assert list(metrics["per_class_recall"].values()) == pytest.approx(recall.tolist(), abs=1e-12)
    assert list(metrics["per_class_support"].values()) == support.tolist()
    assert list(metrics["per_class_f1"]) == labels
    assert metrics["macro_precision"] == pytest.approx(precision.mean(), abs=1e-12)
    assert metrics["macro_recall"] == pytest.approx(recall.mean(), abs=1e-12)
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=everything).tolist()
    # Indices (list, numpy, torch) give the same result as names.
    assert classification_metrics(y_true.tolist(), y_pred, labels) == metrics
    assert classification_metrics(torch.from_numpy(y_true), torch.from_numpy(y_pred), labels) == metrics


def test_absent_class_counts_as_zero_in_macro():
    # Class "c" never occurs: F1 = [1, 1, 0] ⇒ macro 2/3, weighted 1, accuracy 1.
    metrics = classification_metrics(["a", "b", "a"], ["a", "b", "a"], ["a", "b", "c"])
    assert metrics["per_class_f1"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert metrics["macro_f1"] == pytest.approx(2 / 3)
    assert metrics["weighted_f1"] == 1.0
    assert metrics["accuracy"] == 1.0
    assert metrics["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_confusion_matrix_rows_are_true_classes():
    metrics = classification_metrics(["a", "a", "b"], ["b", "b", "b"], ["a", "b"])
    assert metrics["confusion_matrix"] == [[0, 2], [0, 1]]
    assert metrics["per_class_support"] == {"a": 2, "b": 1}


def test_metrics_are_json_ready():
    import json

    metrics = classification_metrics(np.array([0, 1]), np.array([1, 1]), ["x", "y"])
    assert json.loads(json.dumps(metrics)) == metrics


def test_bad_inputs():
    labels = ["netral", "positif"]
    with pytest.raises(ValueError, match="y_true has 2 entries but y_pred has 1"):
        classification_metrics(["netral", "positif"], ["netral"], labels)
    with pytest.raises(
        ValueError, match=r"y_pred\[1\] = 'happy' is not a label \(expected one of netral, positif\)"
    ):
        classification_metrics(["netral", "positif"], ["netral", "happy"], labels)
    with pytest.raises(ValueError, match=r"y_true\[0\] = 2 is not a class index in \[0, 2\)"):
        classification_metrics([2], [0], labels)
    with pytest.raises(ValueError, match=r"y_true\[0\] = 0.5 is neither a label name nor a class index"):
        classification_metrics([0.5], [0], labels)
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics([], [], labels)
    with pytest.raises(ValueError, match="labels have duplicates"):
        classification_metrics([0], [0], ["a", "a"])


# ---------------------------------------------------------------------------------------------------
# Closed-set scoring


class ToyCausalLM:
    """A random causal LM: the logits at t depend only on the attended tokens up to t.

    With ``continuations`` (token → the token that must follow it), the model is confident (margin
    ``margin``) about every verbalizer's remaining tokens, as a model trained on the verbalizers is.
    """

    def __init__(
        self, vocab: int, seed: int, continuations: dict[int, int] | None = None, margin: float = 100.0
    ):
        gen = torch.Generator().manual_seed(seed)
        self.embedding = torch.randn(vocab, 16, generator=gen)
        self.head = torch.randn(16, vocab, generator=gen) * 2.0
        self.boost = torch.zeros(vocab, vocab)
        for token, following in (continuations or {}).items():
            self.boost[token, following] = margin

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask[..., None].float()
        hidden = torch.tanh(torch.cumsum(self.embedding[input_ids] * mask, dim=1))
        return hidden @ self.head + self.boost[input_ids]


def pad(rows: list[list[int]], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    return ids, mask


def full_answer_scores(
    model: ToyCausalLM, prompts: list[list[int]], verbalizers: list[list[int]]
) -> torch.Tensor:
    """[B, C]: the log-likelihood of each whole verbalizer after each prompt, one sequence per pair."""
    rows, answers = [], []
    for prompt in prompts:
        for tokens in verbalizers:
            rows.append(prompt + tokens)
            answers.append([-100] * len(prompt) + tokens)
    ids, mask = pad(rows)
    labels = torch.full_like(ids, -100)
    for i, answer in enumerate(answers):
        labels[i, : len(answer)] = torch.tensor(answer)
    return sequence_logprob(model(ids, mask), labels).view(len(prompts), len(verbalizers))


def random_prompts(seed: int, count: int = 12) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 20, size=int(rng.integers(2, 9))).tolist() for _ in range(count)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("left_padding", [False, True])
def test_single_token_verbalizers_score_exactly_the_answer_likelihood(seed, left_padding):
    verbalizers = [[21], [25], [22], [30], [27]]
    first_ids = check_distinct_first_tokens(verbalizers)
    model = ToyCausalLM(vocab=32, seed=seed)
    prompts = random_prompts(seed)
    ids, mask = pad(prompts, left=left_padding)
    scores = verbalizer_scores(model(ids, mask), mask, first_ids)
    full = full_answer_scores(model, prompts, verbalizers)
    assert torch.allclose(scores, full, atol=1e-5)
    assert torch.equal(closed_set_predict(scores), closed_set_predict(full))


@pytest.mark.parametrize("seed", range(5))
def test_multi_token_verbalizers_pick_the_full_likelihood_argmax(seed):
    # Distinct first tokens; the model has learned how each verbalizer continues, so the continuation
    # tokens have log-probability ~0 and the first token decides the full likelihood.
    verbalizers = [[21, 30, 31], [22, 32], [23, 33, 34, 35], [24]]
    continuations = {21: 30, 30: 31, 22: 32, 23: 33, 33: 34, 34: 35}
    model = ToyCausalLM(vocab=36, seed=seed, continuations=continuations)
    first_ids = check_distinct_first_tokens(verbalizers)
    prompts = random_prompts(seed + 100)
    ids, mask = pad(prompts)
    scores = verbalizer_scores(model(ids, mask), mask, first_ids)
    full = full_answer_scores(model, prompts, verbalizers)
    assert torch.equal(closed_set_predict(scores), closed_set_predict(full))
    assert torch.allclose(scores, full, atol=1e-4)


def test_teacher_forced_first_answer_logits_match_prompt_scoring():
    # Training (prompt + answer, labels on the answer) and eval (prompt only) score the same position.
    verbalizers = [[21], [22, 30], [23]]
    first_ids = check_distinct_first_tokens(verbalizers)
    model = ToyCausalLM(vocab=32, seed=7)
    prompts = random_prompts(7, count=4)
    answers = [verbalizers[i % 3] for i in range(4)]
    rows = [p + a for p, a in zip(prompts, answers, strict=True)]
    ids, mask = pad(rows)
    labels = torch.full_like(ids, -100)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
    train_scores = score_label_tokens(first_answer_logits(model(ids, mask), labels), first_ids)
    prompt_ids, prompt_mask = pad(prompts)
    eval_scores = verbalizer_scores(model(prompt_ids, prompt_mask), prompt_mask, first_ids)
    assert torch.allclose(train_scores, eval_scores, atol=1e-5)


def test_score_label_tokens_are_vocabulary_log_probs():
    logits = torch.tensor([[0.0, math.log(2.0), math.log(5.0), 0.0]])
    # softmax over all 4 tokens: [1, 2, 5, 1] / 9.
    scores = score_label_tokens(logits, [2, 1])
    assert scores.tolist()[0] == pytest.approx([math.log(5 / 9), math.log(2 / 9)])


def test_last_token_logits_left_and_right_padding():
    logits = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_logits(logits, right)[:, 0].tolist() == [1.0, 7.0]
    assert last_token_logits(logits, left)[:, 0].tolist() == [3.0, 7.0]


def test_closed_set_predict_ties_go_to_lowest_index():
    scores = torch.tensor([[0.5, 2.0, 2.0], [-1.0, -3.0, -1.0]])
    assert closed_set_predict(scores).tolist() == [1, 0]


def test_check_distinct_first_tokens_messages():
    assert check_distinct_first_tokens([[5, 9], [6], [7, 9]]) == [5, 6, 7]
    with pytest.raises(
        ValueError, match="verbalizers of 'kebahagiaan' and 'kesedihan' share their first token 11"
    ):
        check_distinct_first_tokens([[3], [11, 4], [11, 5]], ["netral", "kebahagiaan", "kesedihan"])
    with pytest.raises(ValueError, match="verbalizer of 'label 1' tokenizes to no tokens"):
        check_distinct_first_tokens([[3], []])
    with pytest.raises(ValueError, match="2 token id lists for 3 labels"):
        check_distinct_first_tokens([[3], [4]], ["a", "b", "c"])


def test_first_answer_logits_errors():
    logits = torch.zeros(1, 3, 5)
    with pytest.raises(ValueError, match="row 0 has no answer tokens"):
        first_answer_logits(logits, torch.full((1, 3), -100))
    with pytest.raises(ValueError, match="answer starts at position 0"):
        first_answer_logits(logits, torch.tensor([[1, 2, -100]]))


def test_sequence_logprob_sums_answer_tokens():
    # Uniform logits over V = 4: each answer token has log-prob ln(1/4); two answer tokens.
    logits = torch.zeros(1, 4, 4)
    labels = torch.tensor([[-100, 3, 2, -100]])
    assert float(sequence_logprob(logits, labels)[0]) == pytest.approx(2 * math.log(0.25))


# ---------------------------------------------------------------------------------------------------
# Model selection


def test_best_epoch_nested_and_flat():
    nested = [{"valid": {"macro_f1": 0.2}}, {"valid": {"macro_f1": 0.5}}, {"valid": {"macro_f1": 0.4}}]
    assert best_epoch(nested) == 1
    flat = [{"valid.macro_f1": 0.2}, {"valid.macro_f1": 0.1}]
    assert best_epoch(flat) == 0
    assert best_epoch([{"valid": {"loss": 2.0}}, {"valid": {"loss": 1.5}}], key="valid.loss", mode="min") == 1


def test_best_epoch_ties_go_to_earliest_and_nan_is_never_best():
    history = [{"f1": math.nan}, {"f1": 0.3}, {"f1": 0.7}, {"f1": 0.7}, {"f1": math.nan}]
    assert best_epoch(history, key="f1") == 2


def test_best_epoch_errors():
    with pytest.raises(ValueError, match="history is empty"):
        best_epoch([])
    with pytest.raises(KeyError, match=r"history\[1\] has no 'valid.macro_f1' \(keys: train\)"):
        best_epoch([{"valid": {"macro_f1": 0.1}}, {"train": {"loss": 1.0}}])
    with pytest.raises(ValueError, match="every entry of history has 'f1' = NaN"):
        best_epoch([{"f1": math.nan}], key="f1")
    with pytest.raises(ValueError, match="mode must be 'max' or 'min', got 'best'"):
        best_epoch([{"f1": 1.0}], key="f1", mode="best")
