"""Closed-set prediction and classification metrics (DESIGN §4).

Prediction scores every label verbalizer given the prompt and takes the argmax. With the prompt's
forward pass only, the model gives the distribution of the *first* answer token, so the scoring here
uses each verbalizer's first token::

    first_ids = check_distinct_first_tokens([tokenizer.encode(v) for v in label_set.verbalizers],
                                            label_set.names)
    scores = verbalizer_scores(logits, attention_mask, first_ids)       # [B, C] log-probabilities
    predicted = closed_set_predict(scores)                              # [B] class indices
    metrics = classification_metrics(class_index, predicted, label_set.names)

Assumption: every verbalizer starts with a different token (checked by
:func:`check_distinct_first_tokens`). For single-token verbalizers the first-token score is the
answer word's log-likelihood; for longer ones it ranks like the full likelihood only as long as the
model continues each verbalizer's first token with the rest of it. Whole answers are scored by
:func:`continuation_logprobs`: each verbalizer's tokens and the end-of-turn token, forwarded once
after the prompts' KV cache (``eval.scoring: sequence``, :mod:`omnimer.training.evaluate`); it equals
:func:`sequence_logprob` of a full forward of prompt + answer.

Metrics are numpy only (scikit-learn is a test dependency, used to check these).

Used by the evaluation of a training run (:mod:`omnimer.training.evaluate`) and its model
selection (:func:`best_epoch`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from omnimer.losses import IGNORE_INDEX

# ----------------------------------------------------------------------------------------------------
# Closed-set scoring.


def check_distinct_first_tokens(
    token_id_lists: Sequence[Sequence[int]], labels: Sequence[str] | None = None
) -> list[int]:
    """Return each verbalizer's first token id; raise ``ValueError`` if one is empty or two share one.

    ``token_id_lists[c]`` is the tokenization of label ``c``'s verbalizer as it appears in the answer;
    ``labels`` (optional) names them in the error message.
    """
    names = list(labels) if labels is not None else [f"label {c}" for c in range(len(token_id_lists))]
    if len(names) != len(token_id_lists):
        raise ValueError(f"{len(token_id_lists)} token id lists for {len(names)} labels")
    first_ids: list[int] = []
    owner: dict[int, str] = {}
    for name, ids in zip(names, token_id_lists, strict=True):
        if len(ids) == 0:
            raise ValueError(f"verbalizer of {name!r} tokenizes to no tokens")
        first = int(ids[0])
        if first in owner:
            raise ValueError(
                f"verbalizers of {owner[first]!r} and {name!r} share their first token {first}; "
                "first-token scoring cannot tell them apart (choose distinct verbalizers or score whole "
                "answers with sequence_logprob)"
            )
        owner[first] = name
        first_ids.append(first)
    return first_ids


def score_label_tokens(logits_at_answer_start: torch.Tensor, first_token_ids: Sequence[int]) -> torch.Tensor:
    """Log-probability of each label's first token, ``[B, C]`` float32.

    ``logits_at_answer_start`` ``[B, V]`` are the logits of the position that predicts the first answer
    token. The softmax runs over the whole vocabulary, so a score equals the first term of
    :func:`sequence_logprob` of that label's answer.
    """
    if logits_at_answer_start.dim() != 2:
        raise ValueError(
            f"logits_at_answer_start must have shape [B, V], got {tuple(logits_at_answer_start.shape)}"
        )
    ids = torch.as_tensor(list(first_token_ids), dtype=torch.long, device=logits_at_answer_start.device)
    return logits_at_answer_start.float().log_softmax(dim=-1)[:, ids]


def last_token_logits(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, V]`` at each row's last attended position (the next-token prediction of a prompt).

    Works with left or right padding: the position is that of the last 1 in ``attention_mask``.
    """
    if attention_mask.shape != logits.shape[:2]:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match "
            f"logits {tuple(logits.shape[:2])}"
        )
    seq_len = attention_mask.shape[1]
    last = seq_len - 1 - attention_mask.long().flip(dims=[1]).argmax(dim=1)
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def first_answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, V]`` of the position that predicts each row's first answer token (teacher forcing).

    The first answer token sits at the first ``t`` with ``labels[t] != -100``; position ``t - 1``
    predicts it. Used in training to feed ``logit_adjust`` with :func:`score_label_tokens`.
    """
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}"
        )
    is_answer = labels != IGNORE_INDEX
    has_answer = is_answer.any(dim=1)
    if not bool(has_answer.all()):
        raise ValueError(f"row {int((~has_answer).nonzero()[0])} has no answer tokens (all labels -100)")
    first = is_answer.long().argmax(dim=1)
    if bool((first == 0).any()):
        raise ValueError("an answer starts at position 0, so no position predicts its first token")
    return logits[torch.arange(logits.shape[0], device=logits.device), first - 1]


def verbalizer_scores(
    logits: torch.Tensor, attention_mask: torch.Tensor, first_token_ids: Sequence[int]
) -> torch.Tensor:
    """Closed-set scores ``[B, C]`` from one forward pass over the prompts alone.

    ``logits`` ``[B, T, V]`` of prompts that end where the answer begins (after the assistant turn's
    header); ``first_token_ids`` from :func:`check_distinct_first_tokens`.
    """
    return score_label_tokens(last_token_logits(logits, attention_mask), first_token_ids)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the answer tokens' log-probabilities per row, ``[B]`` float32.

    Same shift and masking as :func:`omnimer.losses.token_cross_entropy` (``labels`` -100 outside the
    answer). For full closed-set scoring, run one row per (example, label) in example-major order and
    ``.view(B, C)`` the result.
    """
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}"
        )
    # Position t predicts token t + 1; only the answer positions are gathered before the float32
    # softmax, so a large vocabulary costs (answer tokens × V), not (B × T × V).
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    selected = logits[:, :-1, :][mask].float()
    targets = shift_labels[mask].long()
    token_logprobs = selected.log_softmax(dim=-1).gather(1, targets[:, None]).squeeze(1)
    example_index = mask.nonzero(as_tuple=True)[0]
    return token_logprobs.new_zeros(logits.shape[0]).index_add(0, example_index, token_logprobs)


def continuation_logprobs(
    first_logits: torch.Tensor,
    continuation_logits: torch.Tensor,
    candidates: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Whole-answer log-likelihood of every candidate after every prompt, ``[B, C]`` float32.

    ``first_logits`` ``[B, V]``: each prompt's next-token logits (:func:`last_token_logits`).
    ``candidates`` ``[C, L]``: each candidate's tokens, right-padded (any id) past ``lengths[c]``.
    ``continuation_logits`` ``[B * C, L, V]``: a forward of the candidates' tokens after the prompts
    (row ``b * C + c`` is prompt ``b`` followed by candidate ``c``, e.g. from the prompts' KV cache
    repeated ``C`` times), so position ``k`` predicts token ``k + 1``.

    Score ``[b, c]`` is log p(candidate c's first token | prompt b) plus, for k = 1 … lengths[c] - 1,
    log p(token k | prompt b, tokens < k): what :func:`sequence_logprob` gives for a full forward of
    the prompt followed by the candidate. Padding after a candidate is never read (causal attention).
    """
    batch, width = first_logits.shape[0], candidates.shape[1]
    n_cand = candidates.shape[0]
    if continuation_logits.shape[:2] != (batch * n_cand, width):
        raise ValueError(
            f"continuation_logits shape {tuple(continuation_logits.shape[:2])} is not "
            f"(B * C, L) = ({batch * n_cand}, {width})"
        )
    lengths = torch.as_tensor(lengths, device=candidates.device)
    if bool((lengths < 1).any()) or bool((lengths > width).any()):
        raise ValueError(f"candidate lengths {lengths.tolist()} must lie in [1, {width}]")
    first = score_label_tokens(first_logits, candidates[:, 0].tolist())  # [B, C]
    # Token k (k >= 1) of candidate c is predicted at position k - 1; gather only those positions.
    within = torch.arange(1, width, device=candidates.device)[None, :] < lengths[:, None]  # [C, L - 1]
    mask = within.repeat(batch, 1)  # [B * C, L - 1]
    targets = candidates[:, 1:].repeat(batch, 1)[mask].to(continuation_logits.device)
    selected = continuation_logits[:, :-1, :][mask.to(continuation_logits.device)].float()
    token_logprobs = selected.log_softmax(dim=-1).gather(1, targets[:, None].long()).squeeze(1)
    row_index = mask.nonzero(as_tuple=True)[0].to(token_logprobs.device)
    rest = token_logprobs.new_zeros(batch * n_cand).index_add(0, row_index, token_logprobs)
    return first + rest.view(batch, n_cand).to(first.device)


def closed_set_predict(class_scores: torch.Tensor) -> torch.Tensor:
    """Predicted class index per row, ``[B]``: the argmax of ``class_scores`` ``[B, C]``.

    Ties go to the lowest index (torch.argmax returns the first maximum).
    """
    if class_scores.dim() != 2:
        raise ValueError(f"class_scores must have shape [B, C], got {tuple(class_scores.shape)}")
    return class_scores.argmax(dim=1)


# ----------------------------------------------------------------------------------------------------
# Classification metrics.


def _to_indices(
    values: Sequence[str | int] | np.ndarray | torch.Tensor, labels: Sequence[str], name: str
) -> np.ndarray:
    """Class indices of label names or of indices already (checked to be in range)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    items = list(values.tolist()) if isinstance(values, np.ndarray) else list(values)
    position = {label: i for i, label in enumerate(labels)}
    out = np.empty(len(items), dtype=np.int64)
    for i, value in enumerate(items):
        if isinstance(value, str):
            if value not in position:
                raise ValueError(
                    f"{name}[{i}] = {value!r} is not a label (expected one of {', '.join(labels)})"
                )
            out[i] = position[value]
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            if not 0 <= value < len(labels):
                raise ValueError(f"{name}[{i}] = {value!r} is not a class index in [0, {len(labels)})")
            out[i] = value
        else:
            raise ValueError(f"{name}[{i}] = {value!r} is neither a label name nor a class index")
    return out


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # zero_division=0, as scikit-learn's zero_division=0.
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def classification_metrics(
    y_true: Sequence[str | int] | np.ndarray | torch.Tensor,
    y_pred: Sequence[str | int] | np.ndarray | torch.Tensor,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Macro-F1 (primary), weighted-F1, accuracy, per-class scores and the confusion matrix.

    ``y_true`` and ``y_pred`` hold label names or class indices into ``labels``. Definitions match
    ``sklearn.metrics`` with ``labels=range(C)`` and ``zero_division=0``: precision, recall and F1 of a
    class are 0 where their denominator is 0, and the macro mean runs over *all* C classes of the label
    set, so a class absent from both ``y_true`` and ``y_pred`` counts as F1 0. Weighted-F1 weighs each
    class by its support (true count). ``confusion_matrix[i][j]`` counts true class i predicted as j.

    Returns plain Python values (JSON-ready): ``n``, ``accuracy``, ``macro_f1``, ``weighted_f1``,
    ``macro_precision``, ``macro_recall``, ``per_class_f1``, ``per_class_precision``,
    ``per_class_recall``, ``per_class_support`` (dicts keyed by label), ``confusion_matrix``, ``labels``.
    """
    labels = list(labels)
    if not labels:
        raise ValueError("labels are empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels have duplicates: {labels}")
    true = _to_indices(y_true, labels, "y_true")
    pred = _to_indices(y_pred, labels, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} entries but y_pred has {len(pred)}")
    if len(true) == 0:
        raise ValueError("no examples to score")

    num_classes = len(labels)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)

    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    # F1 = 2TP / (2TP + FP + FN): equal to 2PR / (P + R), and 0 (not NaN) when the class never occurs.
    f1 = _safe_divide(2 * true_positive, support + predicted)

    return {
        "n": len(true),
        "accuracy": float(true_positive.sum() / len(true)),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "per_class_f1": {label: float(v) for label, v in zip(labels, f1, strict=True)},
        "per_class_precision": {label: float(v) for label, v in zip(labels, precision, strict=True)},
        "per_class_recall": {label: float(v) for label, v in zip(labels, recall, strict=True)},
        "per_class_support": {label: int(v) for label, v in zip(labels, support, strict=True)},
        "confusion_matrix": confusion.tolist(),
        "labels": labels,
    }


# ----------------------------------------------------------------------------------------------------
# Model selection.


def _lookup(entry: Mapping[str, Any], key: str) -> Any:
    """``entry[key]``, else the nested path: ``"valid.macro_f1"`` → ``entry["valid"]["macro_f1"]``."""
    if key in entry:
        return entry[key]
    value: Any = entry
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def best_epoch(history: Sequence[Mapping[str, Any]], key: str = "valid.macro_f1", mode: str = "max") -> int:
    """Index into ``history`` of the entry with the best ``key`` (``mode`` "max" or "min").

    ``key`` is a flat key of each entry or a dotted path into nested dicts. Ties go to the earliest
    entry (fewer updates for the same score). NaN scores (a diverged epoch) are never best.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if not history:
        raise ValueError("history is empty")
    best_index = -1
    best_value = math.nan
    for i, entry in enumerate(history):
        try:
            value = float(_lookup(entry, key))
        except KeyError:
            raise KeyError(f"history[{i}] has no {key!r} (keys: {', '.join(map(str, entry))})") from None
        if math.isnan(value):
            continue
        if best_index < 0 or (value > best_value if mode == "max" else value < best_value):
            best_index, best_value = i, value
    if best_index < 0:
        raise ValueError(f"every entry of history has {key!r} = NaN")
    return best_index
