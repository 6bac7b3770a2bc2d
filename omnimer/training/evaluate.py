"""Closed-set evaluation of a training run: score every label verbalizer, take the argmax, compute metrics.

Used each epoch by the Ray Train worker (:mod:`omnimer.training.worker`) on the valid split, and on
the test split for the epoch that model selection picks; also by the GPU bench
(``python -m tests.bench.gpu_train``). The scoring itself is :mod:`omnimer.metrics`.
"""

from __future__ import annotations

import dataclasses

import torch

from omnimer import metrics
from omnimer.collate import collate, to_device
from omnimer.labels import LabelSet
from omnimer.tasks import Prompting, main_conversation
from omnimer.training.predictions import Predictions

# The Qwen2.5 chat template closes every turn with this token; a whole answer is scored up to it.
END_OF_TURN = "<|im_end|>"


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How a run scores its labels: the method, the verbalizers the model answers with, their tokens.

    ``method`` is ``sequence`` (each verbalizer's tokens plus ``end_id``, summed; one forward of
    the prompts, then one of all candidates from the prompts' KV cache) or ``first_token`` (the
    first token's log-probability; one forward). ``first_ids`` are the verbalizers' first tokens
    when they are distinct (what first-token scoring and the logit_adjust loss read), else None.
    """

    method: str
    requested: str
    labels: tuple[str, ...]
    verbalizers: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    end_id: int
    first_ids: tuple[int, ...] | None

    def to_json(self) -> dict:
        """The record's ``scoring`` entry."""
        return {
            "method": self.method,
            "requested": self.requested,
            "labels": list(self.labels),
            "verbalizers": list(self.verbalizers),
            "token_ids": [list(ids) for ids in self.token_ids],
            "end_of_turn_id": self.end_id,
            "first_token_ids": list(self.first_ids) if self.first_ids is not None else None,
        }


def _token_ids(tokenizer, words) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(tokenizer(word, add_special_tokens=False).input_ids) for word in words)


def _distinct_first_tokens(token_ids, words) -> tuple[int, ...] | None:
    try:
        return tuple(metrics.check_distinct_first_tokens(token_ids, list(words)))
    except ValueError:
        return None


def resolve_scoring(tokenizer, labels: LabelSet, requested: str = "auto") -> Scoring:
    """The run's :class:`Scoring` for ``eval.scoring`` = ``requested``; raises ``ValueError`` for
    verbalizers the method cannot tell apart (the driver calls it before any worker starts).

    - ``sequence``: the label set's verbalizers, whose token sequences must differ;
    - ``first_token``: the verbalizers, or else the English display names, whose first tokens differ;
    - ``auto``: ``first_token`` when every verbalizer is one token (then it scores the whole word),
      else ``sequence``.
    """
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if not isinstance(end_id, int) or end_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {END_OF_TURN} token to end an answer with")
    words = tuple(labels.verbalizers)
    token_ids = _token_ids(tokenizer, words)
    method = requested
    if requested == "auto":
        single = all(len(ids) == 1 for ids in token_ids) and len(set(token_ids)) == len(token_ids)
        method = "first_token" if single else "sequence"
    if method == "sequence":
        seen: dict[tuple[int, ...], str] = {}
        for name, ids in zip(labels.names, token_ids, strict=True):
            if not ids:
                raise ValueError(f"verbalizer of {name!r} tokenizes to no tokens")
            if ids in seen:
                raise ValueError(
                    f"verbalizers of {seen[ids]!r} and {name!r} tokenize to the same tokens {list(ids)}; "
                    "no scoring can tell them apart (give the label set distinct verbalizers)"
                )
            seen[ids] = name
        return Scoring(
            method,
            requested,
            labels.names,
            words,
            token_ids,
            end_id,
            _distinct_first_tokens(token_ids, words),
        )
    if method != "first_token":
        raise ValueError(f"unknown scoring method {requested!r} (auto, sequence or first_token)")
    errors = []
    for candidate in (labels.verbalizers, labels.display):
        ids = _token_ids(tokenizer, candidate)
        try:
            first_ids = tuple(metrics.check_distinct_first_tokens(ids, list(candidate)))
        except ValueError as err:
            errors.append(str(err))
            continue
        return Scoring(method, requested, labels.names, tuple(candidate), ids, end_id, first_ids)
    raise ValueError(
        "no verbalizers with distinct first tokens for this tokenizer: "
        + "; ".join(errors)
        + " (set eval.scoring: sequence to score whole answers)"
    )


class Evaluator:
    """Closed-set evaluation of batches of prompts, scored as ``scoring`` says: first-token scoring
    is one forward per batch; sequence scoring a forward of the prompts, then one of every
    (prompt, verbalizer) continuation on the prompts' KV cache, repeated once per label.

    With several workers every one runs the same number of forward passes: under ZeRO-3 each forward
    gathers the partitioned weights with collectives, so a worker whose slice of a split needs one
    batch fewer (13 test clips on 2 workers: 7 and 6) would leave the others waiting in a collective
    that never matches (gloo aborts, NCCL hangs). A worker short of batches runs filler forwards on
    rows it already has (``filler``: a row to use when its slice is empty) and discards them.
    """

    def __init__(
        self,
        processor,
        prompting: Prompting,
        scoring: Scoring,
        frame_size: int,
        eval_batch_size: int,
        filler: dict | None = None,
    ):
        self.processor, self.prompting, self.scoring = processor, prompting, scoring
        self.frame_size, self.eval_batch_size, self.filler = frame_size, eval_batch_size, filler
        self.labels = prompting.labels

    @torch.no_grad()
    def evaluate(self, model, rows: list[dict], device, world_size: int) -> dict | None:
        """Metrics over every rank's rows (None if the split is empty)."""
        return self.score(model, rows, device, world_size).metrics(self.labels)

    @torch.no_grad()
    def score(self, model, rows: list[dict], device, world_size: int) -> Predictions:
        """Every rank's predictions of a split, gathered on every rank and sorted by clip id."""
        local = self.predict(model, rows, device, world_size)
        return Predictions.merge(gather([local], world_size))

    def _chunks(self, rows: list[dict]) -> list[list[dict]]:
        """The evaluation batches of ``rows``: those with a label for the target, in order."""
        size, target = self.eval_batch_size, self.prompting.target
        chunks = [[r for r in rows[i : i + size] if r[target] is not None] for i in range(0, len(rows), size)]
        return [chunk for chunk in chunks if chunk]

    @torch.no_grad()
    def predict(self, model, rows: list[dict], device, world_size: int = 1) -> Predictions:
        """This rank's predictions of ``rows`` (those with a label for the target)."""
        chunks = self._chunks(rows)
        forwards = len(chunks)
        if world_size > 1:
            count = torch.tensor([forwards], dtype=torch.long, device=device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            forwards = int(count)
        by_clip = {r["clip_id"]: r for r in rows}
        parts = []
        for i in range(forwards):
            if i < len(chunks):
                batch, scores = self._scores(model, chunks[i], device)
                parts.append(
                    Predictions(
                        clip_id=tuple(batch.clip_ids),
                        video_id=tuple(str(by_clip[c]["video_id"]) for c in batch.clip_ids),
                        speaker_id=tuple(str(by_clip[c]["speaker_id"]) for c in batch.clip_ids),
                        gold=tuple(batch.class_index.tolist()),
                        predicted=tuple(metrics.closed_set_predict(scores).tolist()),
                        scores=tuple(tuple(row) for row in scores.float().cpu().tolist()),
                    )
                )
            else:  # a filler forward: the same modules as the other workers' batch, output unused
                self._scores(model, chunks[0] if chunks else [self._filler()], device)
        return Predictions.merge(parts)

    def _filler(self) -> dict:
        if self.filler is None:
            raise RuntimeError("this worker has no evaluation rows and no filler row for its forward passes")
        return self.filler

    def _scores(self, model, chunk: list[dict], device):
        convs = [main_conversation(r, self.prompting, with_answer=False) for r in chunk]
        batch = collate(
            self.processor,
            convs,
            {r["clip_id"]: r for r in chunk},
            frame_size=self.frame_size,
            audio_in_video=self.prompting.audio_in_video,
            with_labels=False,
        )
        inputs = to_device(batch.inputs, device)
        if self.scoring.method == "first_token":
            out = model(**inputs, use_cache=False)
            return batch, metrics.verbalizer_scores(
                out.logits, inputs["attention_mask"], self.scoring.first_ids
            )
        return batch, sequence_scores(model, inputs, self.scoring)


def candidate_tokens(scoring: Scoring) -> tuple[torch.Tensor, torch.Tensor]:
    """Every verbalizer's tokens followed by the end-of-turn token, right-padded with it to one width
    (``[C, L]``), and their lengths (``[C]``)."""
    sequences = [[*ids, scoring.end_id] for ids in scoring.token_ids]
    width = max(len(seq) for seq in sequences)
    tokens = torch.tensor(
        [seq + [scoring.end_id] * (width - len(seq)) for seq in sequences], dtype=torch.long
    )
    return tokens, torch.tensor([len(seq) for seq in sequences], dtype=torch.long)


def _rope_deltas(model) -> torch.Tensor:
    """The text-position offset per prompt (``[B, 1]``) that the Thinker keeps from its last forward
    without a cache: a text token at unpadded index ``n`` of a prompt sits at position ``n + delta``.
    Found by attribute, so it works through the LoRA and DeepSpeed wrappers."""
    for module in model.modules():
        deltas = getattr(module, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor):
            return deltas
    raise RuntimeError(
        "the model kept no rope_deltas after the prompts' forward (not a Qwen2.5-Omni Thinker?)"
    )


def sequence_scores(model, inputs: dict, scoring: Scoring) -> torch.Tensor:
    """Whole-answer closed-set scores ``[B, C]`` of a batch of prompts (model inputs on the device).

    Two forwards, whatever the number of labels: the prompts with ``use_cache=True``, then every
    (prompt, candidate) pair at once on the prompts' KV cache repeated ``C`` times, at the text
    positions that follow each prompt (the Thinker's 3-D rotary positions all advance by one per
    text token). Equal to :func:`omnimer.metrics.sequence_logprob` of full forwards of prompt +
    verbalizer + end-of-turn (checked in the tests).
    """
    mask = inputs["attention_mask"]
    out = model(**inputs, use_cache=True)
    first_logits = metrics.last_token_logits(out.logits, mask)
    deltas = _rope_deltas(model).to(mask.device)
    candidates, lengths = candidate_tokens(scoring)
    candidates, n_cand = candidates.to(mask.device), candidates.shape[0]
    batch, width = mask.shape[0], candidates.shape[1]
    cache = out.cache
    cache.batch_repeat_interleave(n_cand)
    step = torch.arange(width, device=mask.device)[None, :]
    positions = (mask.sum(dim=1, keepdim=True) + deltas).repeat_interleave(n_cand, dim=0) + step
    continuation = model(
        input_ids=candidates.repeat(batch, 1),
        attention_mask=torch.cat(
            [
                mask.repeat_interleave(n_cand, dim=0),
                torch.ones(batch * n_cand, width, dtype=mask.dtype, device=mask.device),
            ],
            dim=1,
        ),
        position_ids=positions[None].expand(3, -1, -1),
        cache=cache,
        use_cache=True,
    )
    return metrics.continuation_logprobs(first_logits, continuation.logits, candidates, lengths)


def gather(values: list, world_size: int) -> list:
    """Every worker's ``values``, concatenated in rank order (on every worker)."""
    if world_size == 1:
        return values
    gathered: list = [None] * world_size
    torch.distributed.all_gather_object(gathered, values)
    return [v for part in gathered for v in part]
