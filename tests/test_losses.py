"""The loss against hand-computed values of each published definition (expected numbers are written out
from the formula, not recomputed with the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from omnimer.aux_tasks import TASK_NAMES
from omnimer.config import LOSS_SCHEMES, LossConfig
from omnimer.losses import (
    MAIN_LOSSES,
    aux_weights,
    build_rebalancing,
    class_weights,
    combine,
    log_class_prior,
    main_loss,
    sampling_weights,
    token_cross_entropy,
    token_focal_loss,
    token_loss,
)

LN2 = math.log(2.0)
LN4_3 = math.log(4.0 / 3.0)


def answer_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two examples, V = 3, one answer token each at position 1 (predicted by position 0).

    Example 0: logits [0, 0, ln 2] at position 0, answer token 2 → p = 2/4, CE = ln 2.
    Example 1: logits [ln 3, 0, -1e4] at position 0, answer token 0 → p = 3/4, CE = ln(4/3).
    Later positions carry junk logits that must be ignored (label -100).
    """
    logits = torch.tensor(
        [
            [[0.0, 0.0, LN2], [5.0, -3.0, 1.0], [2.0, 2.0, -7.0]],
            [[math.log(3.0), 0.0, -1e4], [-4.0, 9.0, 0.5], [1.0, 0.0, 3.0]],
        ]
    )
    labels = torch.tensor([[-100, 2, -100], [-100, 0, -100]])
    return logits, labels


# ---------------------------------------------------------------------------------------------------
# Class weights, priors and sampling.


def test_class_weights_inverse_freq_counts_8_2():
    # raw [1/8, 1/2]; count-weighted mean 1 ⇒ w_c = N / (K n_c) = 10 / (2·8), 10 / (2·2).
    w = class_weights([8, 2], "inverse_freq")
    assert w.tolist() == pytest.approx([0.625, 2.5])


def test_class_weights_sqrt_inverse_freq_counts_8_2():
    # raw [1/√8, 1/√2]; Σ n_c raw_c = √8 + √2 = 3√2 ⇒ w = 10/(√8·3√2), 10/(√2·3√2) = 10/12, 10/6.
    w = class_weights([8, 2], "sqrt_inverse_freq")
    assert w.tolist() == pytest.approx([10 / 12, 10 / 6])


def test_class_weights_effective_number_counts_8_2():
    # β = 0.5: raw = (1-β)/(1-β^n) = 0.5/(255/256) = 128/255 and 0.5/(3/4) = 2/3;
    # Σ n_c raw_c = 1024/255 + 4/3 = 1364/255 ⇒ w = 10·(128/255)/(1364/255), 10·(2/3)/(1364/255).
    w = class_weights([8, 2], "effective_number", beta=0.5)
    assert w.tolist() == pytest.approx([1280 / 1364, 1700 / 1364])


def test_effective_number_limits():
    # β → 0: every class has effective number 1 (weights all equal); β → 1: it tends to inverse_freq.
    assert class_weights([8, 2], "effective_number", beta=1e-9).tolist() == pytest.approx([1.0, 1.0])
    assert class_weights([8, 2], "effective_number", beta=1 - 1e-9).tolist() == pytest.approx(
        [0.625, 2.5], rel=1e-6
    )


@pytest.mark.parametrize("scheme", ["inverse_freq", "sqrt_inverse_freq", "effective_number"])
def test_count_weighted_mean_is_one(scheme):
    counts = [50, 7, 0, 1, 300]
    w = class_weights(counts, scheme, beta=0.99)
    assert w[2] == 0  # a class without examples gets weight 0
    assert float((w.double() * torch.tensor(counts)).sum() / sum(counts)) == pytest.approx(1.0)


def test_zero_count_class_inverse_freq():
    assert class_weights([8, 0, 2], "inverse_freq").tolist() == pytest.approx([0.625, 0.0, 2.5])


@pytest.mark.parametrize("scheme", ["none", "focal", "logit_adjust", "resample"])
def test_unweighted_schemes_give_ones(scheme):
    assert class_weights([8, 2, 1], scheme).tolist() == [1.0, 1.0, 1.0]


def test_class_weights_bad_input():
    with pytest.raises(ValueError, match="unknown loss scheme 'balanced'; known: none, inverse_freq"):
        class_weights([1, 2], "balanced")
    with pytest.raises(ValueError, match=r"class counts must be >= 0, got \[3, -1\]"):
        class_weights([3, -1], "inverse_freq")
    with pytest.raises(ValueError, match="all zero"):
        class_weights([0, 0], "inverse_freq")
    with pytest.raises(ValueError, match="beta must be in"):
        class_weights([1, 2], "effective_number", beta=1.0)


def test_log_class_prior():
    assert log_class_prior([8, 2]).tolist() == pytest.approx([math.log(0.8), math.log(0.2)])
    # An unseen class counts as seen once: counts [8, 1, 2] over 11.
    assert log_class_prior([8, 0, 2]).tolist() == pytest.approx(
        [math.log(8 / 11), math.log(1 / 11), math.log(2 / 11)]
    )


def test_sampling_weights_balance_classes():
    labels = [0, 0, 0, 0, 1, 2, 2, 0]
    p = sampling_weights(labels)
    # counts [5, 1, 2]: p_i ∝ 1/n ⇒ each class has total 1/3.
    assert p.tolist() == pytest.approx([1 / 15] * 4 + [1 / 3, 1 / 6, 1 / 6, 1 / 15])
    assert float(p.sum()) == pytest.approx(1.0)
    assert p.dtype == torch.float64
    sampler = torch.utils.data.WeightedRandomSampler(
        p, num_samples=30000, generator=torch.Generator().manual_seed(0)
    )
    drawn = torch.bincount(torch.tensor(labels)[list(sampler)], minlength=3) / 30000
    assert drawn.tolist() == pytest.approx([1 / 3] * 3, abs=0.02)


def test_sampling_weights_with_given_counts():
    # counts from the whole training set, labels of a subset: p_i ∝ 1/n_{y_i}.
    assert sampling_weights([0, 1], counts=[8, 2]).tolist() == pytest.approx([0.2, 0.8])
    with pytest.raises(ValueError, match=r"example 1 has class index 3, outside \[0, 2\)"):
        sampling_weights([0, 3], counts=[8, 2])
    with pytest.raises(ValueError, match="example 0 has class 1, whose count is 0"):
        sampling_weights([1], counts=[8, 0])


# ---------------------------------------------------------------------------------------------------
# Token losses.


def test_token_cross_entropy_hand_example():
    logits, labels = answer_batch()
    loss, counts = token_cross_entropy(logits, labels)
    assert counts.tolist() == [1, 1]
    assert loss.tolist() == pytest.approx([LN2, LN4_3], rel=1e-5)


def test_token_cross_entropy_matches_torch_and_ignores_masked_positions():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    labels[0, :4] = -100  # answer = positions 4..6
    labels[1, :2] = -100
    labels[1, 5:] = -100  # answer = positions 2..4, padding after
    labels[2, :6] = -100  # a single answer token
    loss, counts = token_cross_entropy(logits, labels)
    assert counts.tolist() == [3, 3, 1]
    for b in range(3):
        expected = F.cross_entropy(logits[b, :-1], labels[b, 1:], ignore_index=-100)
        assert float(loss[b]) == pytest.approx(float(expected), rel=1e-5)
    # Changing logits at positions that predict -100 changes nothing.
    changed = logits.clone()
    changed[0, :3] += 100.0
    changed[:, -1] -= 50.0  # the last position predicts nothing at all
    assert torch.allclose(token_cross_entropy(changed, labels)[0], loss)


def test_token_cross_entropy_example_without_answer():
    logits, labels = answer_batch()
    labels[1] = -100
    loss, counts = token_cross_entropy(logits, labels)
    assert counts.tolist() == [1, 0]
    assert loss.tolist() == pytest.approx([LN2, 0.0], rel=1e-5)


def test_token_cross_entropy_shape_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \[B, T, V\], got \(2, 3\)"):
        token_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels shape \(2, 4\) does not match logits \(2, 3\)"):
        token_cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_bf16_logits_are_scored_in_float32():
    logits, labels = answer_batch()
    loss, _ = token_cross_entropy(logits.bfloat16(), labels)
    assert loss.dtype == torch.float32


def test_focal_hand_example():
    # p_t = 1/2 and 3/4 ⇒ (1-p)^2 · CE = ln2 / 4 and ln(4/3) / 16.
    logits, labels = answer_batch()
    loss, _ = token_focal_loss(logits, labels, gamma=2.0)
    assert loss.tolist() == pytest.approx([LN2 / 4, LN4_3 / 16], rel=1e-5)


def test_focal_applies_to_every_answer_token():
    # Two answer tokens, both with p = 1/2 ⇒ mean of (1/2)^1 · ln 2 over the two tokens.
    logits = torch.zeros(1, 3, 2)
    labels = torch.tensor([[-100, 1, 0]])
    loss, counts = token_focal_loss(logits, labels, gamma=1.0)
    assert counts.tolist() == [2]
    assert float(loss[0]) == pytest.approx(LN2 / 2, rel=1e-5)


def test_focal_gamma_zero_equals_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 9, generator=gen, requires_grad=True)
    labels = torch.randint(0, 9, (4, 6), generator=gen)
    labels[:, :3] = -100
    focal, _ = token_focal_loss(logits, labels, gamma=0.0)
    ce, _ = token_cross_entropy(logits, labels)
    assert torch.equal(focal, ce)
    (grad,) = torch.autograd.grad(focal.sum(), logits)
    assert torch.isfinite(grad).all()


def test_focal_gradient_finite_for_saturated_token():
    logits = torch.tensor([[[200.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([[-100, 0]])
    loss, _ = token_focal_loss(logits, labels, gamma=0.5)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(grad).all()


def test_token_loss_is_batch_mean():
    logits, labels = answer_batch()
    assert float(token_loss(logits, labels)) == pytest.approx((LN2 + LN4_3) / 2, rel=1e-5)


# ---------------------------------------------------------------------------------------------------
# The main loss per scheme.


def test_every_scheme_has_a_main_loss():
    assert set(MAIN_LOSSES) == set(LOSS_SCHEMES)


@pytest.mark.parametrize("scheme", ["none", "resample"])
def test_main_loss_unweighted(scheme):
    logits, labels = answer_batch()
    r = build_rebalancing(LossConfig(scheme=scheme), [8, 0, 2])
    loss = main_loss(r, torch.tensor([2, 0]), logits=logits, labels=labels)
    assert float(loss) == pytest.approx((LN2 + LN4_3) / 2, rel=1e-5)


@pytest.mark.parametrize(
    ("scheme", "weights"),
    [
        # counts [8, 0, 2]: inverse_freq w = [10/(2·8), 0, 10/(2·2)]
        ("inverse_freq", [0.625, 0.0, 2.5]),
        ("sqrt_inverse_freq", [10 / 12, 0.0, 10 / 6]),
        ("effective_number", [1280 / 1364, 0.0, 1700 / 1364]),
    ],
)
def test_main_loss_class_weighted(scheme, weights):
    # Example 0 is class 2 (CE ln 2), example 1 is class 0 (CE ln 4/3); L = (w_2 ln2 + w_0 ln 4/3) / B.
    logits, labels = answer_batch()
    r = build_rebalancing(LossConfig(scheme=scheme, beta=0.5), [8, 0, 2])
    loss = main_loss(r, torch.tensor([2, 0]), logits=logits, labels=labels)
    assert float(loss) == pytest.approx((weights[2] * LN2 + weights[0] * LN4_3) / 2, rel=1e-5)


def test_main_loss_weight_survives_batch_of_one():
    logits, labels = answer_batch()
    r = build_rebalancing(LossConfig(scheme="inverse_freq"), [8, 0, 2])
    loss = main_loss(r, torch.tensor([2]), logits=logits[:1], labels=labels[:1])
    assert float(loss) == pytest.approx(2.5 * LN2, rel=1e-5)


def test_main_loss_focal():
    logits, labels = answer_batch()
    r = build_rebalancing(LossConfig(scheme="focal", gamma=2.0), [8, 0, 2])
    loss = main_loss(r, torch.tensor([2, 0]), logits=logits, labels=labels)
    assert float(loss) == pytest.approx((LN2 / 4 + LN4_3 / 16) / 2, rel=1e-5)


def test_main_loss_logit_adjust_hand_example():
    # Equal scores, priors [0.8, 0.2], τ = 1: adjusted logits [ln .8, ln .2];
    # CE for class 1 = -ln(0.2 / 1.0) = ln 5, for class 0 = ln 1.25.
    r = build_rebalancing(LossConfig(scheme="logit_adjust", tau=1.0), [8, 2])
    scores = torch.zeros(2, 2)
    loss = main_loss(r, torch.tensor([1, 0]), class_scores=scores)
    assert float(loss) == pytest.approx((math.log(5.0) + math.log(1.25)) / 2, rel=1e-6)
    # τ = 2 squares the prior ratio: softmax([2 ln .8, 2 ln .2]) gives class 1 0.04/0.68.
    r2 = build_rebalancing(LossConfig(scheme="logit_adjust", tau=2.0), [8, 2])
    assert float(main_loss(r2, torch.tensor([1]), class_scores=torch.zeros(1, 2))) == pytest.approx(
        math.log(0.68 / 0.04), rel=1e-6
    )


def test_logit_adjust_tau_zero_is_plain_cross_entropy_over_classes():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(5, 4, generator=gen)
    target = torch.tensor([0, 3, 1, 1, 2])
    r = build_rebalancing(LossConfig(scheme="logit_adjust", tau=0.0), [40, 3, 1, 9])
    assert float(main_loss(r, target, class_scores=scores)) == pytest.approx(
        float(F.cross_entropy(scores, target)), rel=1e-6
    )


def test_main_loss_missing_inputs():
    r = build_rebalancing(LossConfig(scheme="logit_adjust"), [8, 2])
    logits, labels = answer_batch()
    with pytest.raises(ValueError, match="'logit_adjust' needs class_scores"):
        main_loss(r, torch.tensor([0, 1]), logits=logits, labels=labels)
    with pytest.raises(ValueError, match=r"class_scores must have shape \[B, 2\], got \(2, 3\)"):
        main_loss(r, torch.tensor([0, 1]), class_scores=torch.zeros(2, 3))
    r = build_rebalancing(LossConfig(scheme="focal"), [8, 2])
    with pytest.raises(ValueError, match="'focal' needs logits and labels"):
        main_loss(r, torch.tensor([0, 1]), class_scores=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\), got \[0, 2\]"):
        main_loss(r, torch.tensor([0, 2]), logits=logits, labels=labels)
    labels[1] = -100
    with pytest.raises(ValueError, match="main-task example 1 has no answer tokens"):
        main_loss(r, torch.tensor([0, 1]), logits=logits, labels=labels)


# ---------------------------------------------------------------------------------------------------
# combine() and the config.


def test_combine_weights_enabled_tasks():
    main = torch.tensor(1.0, requires_grad=True)
    aux = {"text": torch.tensor(2.0), "face": torch.tensor(4.0), "prosody": torch.tensor(8.0)}
    total, parts = combine(main, aux, {"text": 0.5, "face": 0.25, "prosody": 0.125})
    assert float(total.detach()) == pytest.approx(1.0 + 1.0 + 1.0 + 1.0)
    assert list(parts) == ["main", "text", "face", "prosody", "total"]
    assert float(parts["face"]) == 4.0  # unweighted
    assert total.requires_grad and not parts["total"].requires_grad


def test_combine_zero_weight_needs_no_task():
    main = torch.tensor(1.5)
    total, parts = combine(main, {"face": torch.tensor(2.0)}, {"text": 0.0, "face": 0.5, "prosody": 0})
    assert float(total) == pytest.approx(2.5)
    assert list(parts) == ["main", "face", "total"]
    # A disabled task given anyway (or as None) is ignored.
    total, _ = combine(main, {"text": torch.tensor(9.0), "prosody": None}, {"text": 0.0, "prosody": 0.0})
    assert float(total) == 1.5


def test_combine_errors():
    main = torch.tensor(1.0)
    with pytest.raises(ValueError, match="face has weight 0.3 but no loss was given"):
        combine(main, {}, {"face": 0.3})
    with pytest.raises(ValueError, match=r"aux losses \['aux_smell'\] have no weight"):
        combine(main, {"aux_smell": torch.tensor(1.0)}, {"face": 0.3})
    with pytest.raises(ValueError, match="weight of text must be >= 0 and finite, got -1.0"):
        combine(main, {}, {"text": -1.0})


def test_aux_weights_from_config():
    weights = aux_weights(LossConfig(aux_weight_text=0.1, aux_weight_face=0.0, aux_weight_prosody=2))
    assert weights == {"text": 0.1, "face": 0.0, "prosody": 2.0}
    assert tuple(weights) == TASK_NAMES  # the table's order


def test_loss_config_defaults():
    config = LossConfig()
    assert (config.scheme, config.beta, config.gamma, config.tau) == ("none", 0.999, 2.0, 1.0)
    assert aux_weights(config) == {"text": 0.3, "face": 0.3, "prosody": 0.3}
    assert config.to_json()["scheme"] == "none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"scheme": "balanced"},
            "loss.scheme 'balanced' is not one of none, inverse_freq, sqrt_inverse_freq, effective_number, "
            "focal, logit_adjust, resample",
        ),
        ({"aux_weight_face": -0.5}, "loss.aux_weight_face must be >= 0, got -0.5"),
        ({"aux_weight_text": float("inf")}, "loss.aux_weight_text must be finite, got inf"),
        ({"aux_weight_prosody": float("nan")}, "loss.aux_weight_prosody must be finite, got nan"),
        ({"aux_weight_text": "0.3"}, "loss.aux_weight_text must be a number, got '0.3'"),
        ({"beta": 1.0}, r"loss.beta must be in \(0, 1\), got 1.0"),
        ({"beta": 0}, r"loss.beta must be in \(0, 1\), got 0"),
        ({"gamma": -1.0}, "loss.gamma must be >= 0, got -1.0"),
        ({"tau": -0.1}, "loss.tau must be >= 0, got -0.1"),
    ],
)
def test_loss_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**kwargs)
