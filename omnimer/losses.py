"""The OmniMER training loss (DESIGN §4): rebalanced main task plus λ-weighted auxiliary tasks.

``L = w_c · L_main + λ_text · L_text + λ_face · L_face + λ_prosody · L_prosody`` (the aux tasks:
:mod:`omnimer.aux_tasks`)

Every task is token cross-entropy on the answer tokens of a causal LM: ``labels`` equals the input ids
on the answer and ``-100`` everywhere else, and position ``t`` of the logits predicts token ``t + 1``.
The main task's class rebalancing is one of :data:`omnimer.config.LOSS_SCHEMES`:

=====================  ==================================================================================
``none``               plain token CE
``inverse_freq``       per-example weight ``w_y ∝ 1 / n_y``
``sqrt_inverse_freq``  per-example weight ``w_y ∝ 1 / sqrt(n_y)``
``effective_number``   per-example weight ``w_y ∝ (1 - β) / (1 - β^n_y)`` (Cui et al., CVPR 2019)
``focal``              per-token ``-(1 - p_t)^γ · log p_t`` on every answer token (Lin et al., ICCV 2017)
``logit_adjust``       CE over the C label scores plus ``τ · log π_y`` (Menon et al., ICLR 2021)
``resample``           plain token CE; the balancing is done by the sampler (:func:`sampling_weights`)
=====================  ==================================================================================

Usage in a training step::

    rebalancing = build_rebalancing(config.loss, train_counts)       # once per run
    main = main_loss(rebalancing, class_index, logits=logits, labels=labels)
    # logit_adjust scores the labels instead (omnimer.metrics, first answer token of each verbalizer):
    #   scores = score_label_tokens(first_answer_logits(logits, labels), first_token_ids)
    #   main = main_loss(rebalancing, class_index, class_scores=scores)
    aux = {"face": token_loss(face_logits, face_labels)}              # only tasks with λ > 0
    total, parts = combine(main, aux, aux_weights(config.loss))

This module is pure torch and knows nothing of the model.

Used by the training step (:mod:`omnimer.training.step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omnimer import aux_tasks
from omnimer.config import LOSS_SCHEMES, LossConfig

# The label of every token that is not part of an answer: cross-entropy and the metrics skip it.
IGNORE_INDEX = -100

# Keeps (1 - p_t)^γ differentiable when p_t rounds to exactly 1 and 0 < γ < 1 (d/dp would be inf · 0).
_FOCAL_EPS = 1e-12


# ----------------------------------------------------------------------------------------------------
# Class statistics: per-class loss weights and per-example sampling probabilities.


def _check_counts(counts: Sequence[int]) -> list[int]:
    values = [int(c) for c in counts]
    if not values:
        raise ValueError("class counts are empty")
    if any(c < 0 for c in values):
        raise ValueError(f"class counts must be >= 0, got {values}")
    if sum(values) == 0:
        raise ValueError(f"class counts are all zero: {values}")
    return values


def class_weights(counts: Sequence[int], scheme: str, beta: float = 0.999) -> torch.Tensor:
    """Per-class weights ``w_c`` of the main loss, float32 of shape ``[C]``.

    Raw weights: ``1 / n_c`` (inverse_freq), ``1 / sqrt(n_c)`` (sqrt_inverse_freq),
    ``(1 - β) / (1 - β^n_c)`` (effective_number). They are then normalized so that the *count-weighted*
    mean is 1, ``Σ_c n_c · w_c / Σ_c n_c = 1``: an example drawn from the training distribution has
    expected weight 1, so the loss keeps the scale of unweighted CE and the λ of the auxiliary tasks keep
    their meaning across schemes. For inverse_freq this gives ``w_c = N / (K · n_c)`` (K classes with
    n_c > 0), scikit-learn's ``class_weight="balanced"``.

    A class with ``n_c = 0`` gets weight 0: it has no training example to weigh, and 0 keeps the
    normalization finite. Schemes that do not weigh examples (none, focal, logit_adjust, resample)
    return all ones.
    """
    values = _check_counts(counts)
    if scheme not in LOSS_SCHEMES:
        raise ValueError(f"unknown loss scheme {scheme!r}; known: {', '.join(LOSS_SCHEMES)}")
    n = torch.tensor(values, dtype=torch.float64)
    if scheme == "inverse_freq":
        raw = 1.0 / n
    elif scheme == "sqrt_inverse_freq":
        raw = 1.0 / n.sqrt()
    elif scheme == "effective_number":
        if not 0 < beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        # 1 - β^n via expm1 keeps precision for β close to 1 (β = 0.9999 is common).
        raw = (1.0 - beta) / -torch.expm1(n * math.log(beta))
    else:
        return torch.ones(len(values), dtype=torch.float32)
    raw = torch.where(n > 0, raw, torch.zeros_like(raw))
    weights = raw * n.sum() / (n * raw).sum()
    return weights.to(torch.float32)


def log_class_prior(counts: Sequence[int]) -> torch.Tensor:
    """``log π_c = log(n_c / N)``, float32 of shape ``[C]``.

    A class absent from training (``n_c = 0``) is counted as seen once, so its adjusted logit stays finite
    (the published definition assumes every class has examples).
    """
    n = torch.tensor(_check_counts(counts), dtype=torch.float64).clamp(min=1.0)
    return (n / n.sum()).log().to(torch.float32)


def sampling_weights(
    labels: Sequence[int] | torch.Tensor, counts: Sequence[int] | None = None
) -> torch.Tensor:
    """Class-balanced sampling probabilities, one per example, float64 of shape ``[N]`` summing to 1.

    ``p_i ∝ 1 / n_{y_i}``: with ``counts`` the class counts of ``labels`` (the default), every class
    present gets total probability ``1 / K``. Pass them to ``torch.utils.data.WeightedRandomSampler``
    (with ``replacement=True``) for the ``resample`` scheme.
    """
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if y.numel() == 0:
        raise ValueError("sampling_weights needs at least one example")
    if counts is None:
        if int(y.min()) < 0:
            raise ValueError(f"class indices must be >= 0, got {int(y.min())}")
        counts = torch.bincount(y).tolist()
    n = torch.tensor(_check_counts(counts), dtype=torch.float64)
    bad = (y < 0) | (y >= len(n))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"example {i} has class index {int(y[i])}, outside [0, {len(n)})")
    empty = n[y] == 0
    if bool(empty.any()):
        i = int(empty.nonzero()[0])
        raise ValueError(f"example {i} has class {int(y[i])}, whose count is 0 in {n.long().tolist()}")
    weights = 1.0 / n[y]
    return weights / weights.sum()


# ----------------------------------------------------------------------------------------------------
# Token losses of a causal LM.


def _answer_token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of the answer tokens: ``(log p_t [N], example index [N], tokens per example [B])``.

    Only the ``N`` answer positions are gathered before the softmax, so a 150k-token vocabulary costs
    ``N × V`` and not ``B × T × V`` in float32.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}"
        )
    # Position t predicts token t + 1.
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    example_index = mask.nonzero(as_tuple=True)[0]
    # float32 softmax: bf16 log-probabilities are too coarse for a loss.
    selected = shift_logits[mask].float()
    targets = shift_labels[mask].long()
    token_logprobs = selected.log_softmax(dim=-1).gather(1, targets[:, None]).squeeze(1)
    return token_logprobs, example_index, mask.sum(dim=1)


def _mean_per_example(
    token_losses: torch.Tensor, example_index: torch.Tensor, token_counts: torch.Tensor
) -> torch.Tensor:
    sums = token_losses.new_zeros(token_counts.shape[0]).index_add(0, example_index, token_losses)
    return sums / token_counts.clamp(min=1)


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-LM cross-entropy per example: ``(loss [B], answer token counts [B])``.

    ``logits`` ``[B, T, V]``, ``labels`` ``[B, T]`` with ``-100`` outside the answer. The logits are
    shifted by one (position ``t`` predicts ``labels[t + 1]``) and the loss of an example is the mean of
    ``-log p_t`` over its answer tokens; an example without answer tokens has loss 0 and count 0.
    """
    token_logprobs, example_index, token_counts = _answer_token_logprobs(logits, labels)
    return _mean_per_example(-token_logprobs, example_index, token_counts), token_counts


def token_focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal loss per example: ``(loss [B], answer token counts [B])``.

    Each answer token contributes ``-(1 - p_t)^γ · log p_t`` (Lin et al. 2017, without the α balancing
    factor) and, as in :func:`token_cross_entropy`, an example's loss is the mean over *all* its answer
    tokens. With ``γ = 0`` this is exactly :func:`token_cross_entropy`.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    token_logprobs, example_index, token_counts = _answer_token_logprobs(logits, labels)
    token_losses = -token_logprobs
    if gamma > 0:
        # 1 - p via expm1: exact for confident tokens, where 1 - exp(log p) cancels catastrophically.
        one_minus_p = (-torch.expm1(token_logprobs)).clamp(min=_FOCAL_EPS)
        token_losses = one_minus_p.pow(gamma) * token_losses
    return _mean_per_example(token_losses, example_index, token_counts), token_counts


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch loss of an auxiliary task: the mean over examples of :func:`token_cross_entropy`."""
    per_example, _ = token_cross_entropy(logits, labels)
    return per_example.mean()


# ----------------------------------------------------------------------------------------------------
# The main task under a rebalancing scheme.


@dataclass(frozen=True, eq=False)
class Rebalancing:
    """Everything the main loss needs from the config and the training class counts.

    Build it once per run with :func:`build_rebalancing`.
    """

    scheme: str
    class_weights: torch.Tensor  # [C] float32, see class_weights()
    log_prior: torch.Tensor  # [C] float32, see log_class_prior()
    gamma: float
    tau: float

    @property
    def num_classes(self) -> int:
        return int(self.class_weights.shape[0])


def build_rebalancing(config: LossConfig, counts: Sequence[int]) -> Rebalancing:
    """The :class:`Rebalancing` of ``config.scheme`` for the training class counts ``counts`` ``[C]``."""
    return Rebalancing(
        scheme=config.scheme,
        class_weights=class_weights(counts, config.scheme, config.beta),
        log_prior=log_class_prior(counts),
        gamma=float(config.gamma),
        tau=float(config.tau),
    )


def _require_token_inputs(
    scheme: str, logits: torch.Tensor | None, labels: torch.Tensor | None, class_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if logits is None or labels is None:
        raise ValueError(f"loss scheme {scheme!r} needs logits and labels of the main task's answer")
    if logits.shape[0] != class_index.shape[0]:
        raise ValueError(f"{logits.shape[0]} examples of logits but {class_index.shape[0]} class indices")
    return logits, labels


def _check_has_answers(token_counts: torch.Tensor) -> None:
    # A main-task example without answer tokens is a collation bug; its loss would silently be 0.
    empty = token_counts == 0
    if bool(empty.any()):
        raise ValueError(
            f"main-task example {int(empty.nonzero()[0])} has no answer tokens (all labels -100)"
        )


def _weighted_cross_entropy(
    r: Rebalancing,
    class_index: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    class_scores: torch.Tensor | None,
) -> torch.Tensor:
    """``(1 / B) Σ_i w_{y_i} · CE_i``; w = 1 for none and resample."""
    logits, labels = _require_token_inputs(r.scheme, logits, labels, class_index)
    per_example, token_counts = token_cross_entropy(logits, labels)
    _check_has_answers(token_counts)
    weights = r.class_weights.to(per_example.device)[class_index]
    # Divide by B, not by Σ w_i: with one example per device (common for a 7B model) Σ w_i normalization
    # would cancel the weight entirely. The count-weighted normalization keeps E[w] = 1 instead.
    return (weights * per_example).sum() / per_example.shape[0]


def _focal(
    r: Rebalancing,
    class_index: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    class_scores: torch.Tensor | None,
) -> torch.Tensor:
    """``(1 / B) Σ_i mean_t -(1 - p_t)^γ log p_t`` over each example's answer tokens."""
    logits, labels = _require_token_inputs(r.scheme, logits, labels, class_index)
    per_example, token_counts = token_focal_loss(logits, labels, r.gamma)
    _check_has_answers(token_counts)
    return per_example.mean()


def _logit_adjusted(
    r: Rebalancing,
    class_index: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    class_scores: torch.Tensor | None,
) -> torch.Tensor:
    """``(1 / B) Σ_i -log softmax(s_i + τ · log π)_{y_i}`` over the C label scores ``s_i``."""
    if class_scores is None:
        raise ValueError(
            "loss scheme 'logit_adjust' needs class_scores [B, C] (e.g. metrics.score_label_tokens of the "
            "logits that predict the first answer token)"
        )
    if class_scores.dim() != 2 or class_scores.shape[1] != r.num_classes:
        raise ValueError(
            f"class_scores must have shape [B, {r.num_classes}], got {tuple(class_scores.shape)}"
        )
    if class_scores.shape[0] != class_index.shape[0]:
        raise ValueError(
            f"{class_scores.shape[0]} rows of class_scores but {class_index.shape[0]} class indices"
        )
    adjusted = class_scores.float() + r.tau * r.log_prior.to(class_scores.device)
    return F.cross_entropy(adjusted, class_index)


_MainLoss = Callable[
    [Rebalancing, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], torch.Tensor
]

MAIN_LOSSES: dict[str, _MainLoss] = {
    "none": _weighted_cross_entropy,
    "inverse_freq": _weighted_cross_entropy,
    "sqrt_inverse_freq": _weighted_cross_entropy,
    "effective_number": _weighted_cross_entropy,
    "focal": _focal,
    "logit_adjust": _logit_adjusted,
    "resample": _weighted_cross_entropy,
}


def main_loss(
    rebalancing: Rebalancing,
    class_index: torch.Tensor,
    *,
    logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    class_scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scalar main-task loss ``w_c · L_main`` under ``rebalancing.scheme``.

    ``class_index`` ``[B]`` is each example's class. Token schemes (all but logit_adjust) need
    ``logits`` ``[B, T, V]`` and ``labels`` ``[B, T]`` of the main conversation; logit_adjust needs
    ``class_scores`` ``[B, C]``, one score per label verbalizer (e.g. its first-token log-probability).
    The adjustment ``τ · log π`` applies to training only: predict with the raw scores.
    """
    class_index = torch.as_tensor(class_index).long().reshape(-1)
    if class_index.numel() == 0:
        raise ValueError("main_loss needs at least one example")
    if int(class_index.min()) < 0 or int(class_index.max()) >= rebalancing.num_classes:
        raise ValueError(
            f"class indices must be in [0, {rebalancing.num_classes}), got {class_index.tolist()}"
        )
    if logits is not None:
        class_index = class_index.to(logits.device)
    elif class_scores is not None:
        class_index = class_index.to(class_scores.device)
    return MAIN_LOSSES[rebalancing.scheme](rebalancing, class_index, logits, labels, class_scores)


# ----------------------------------------------------------------------------------------------------
# The total loss.


def aux_weights(config: LossConfig) -> dict[str, float]:
    """λ per auxiliary task, keyed by its name (:data:`omnimer.aux_tasks.TASK_NAMES`)."""
    return aux_tasks.aux_weights(config)


def combine(
    main: torch.Tensor,
    aux: Mapping[str, torch.Tensor | None],
    weights: Mapping[str, float],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``total = main + Σ_m λ_m · aux[m]`` over the tasks with ``λ_m > 0``, and its parts for logging.

    A task with ``λ = 0`` is disabled: its entry in ``aux`` may be absent or None, and is ignored if
    given. A task with ``λ > 0`` must have a loss. ``parts`` holds detached scalars: ``"main"``, each
    enabled task's *unweighted* loss, and ``"total"``.
    """
    unknown = sorted(set(aux) - set(weights))
    if unknown:
        raise ValueError(f"aux losses {unknown} have no weight; weighted tasks: {', '.join(weights)}")
    total = main
    parts: dict[str, torch.Tensor] = {"main": main.detach()}
    for task, weight in weights.items():
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"weight of {task} must be >= 0 and finite, got {weight!r}")
        if weight == 0:
            continue
        loss = aux.get(task)
        if loss is None:
            raise ValueError(f"{task} has weight {weight} but no loss was given (was its batch built?)")
        total = total + weight * loss
        parts[task] = loss.detach()
    parts["total"] = total.detach()
    return total, parts
