"""Closed-set evaluation of a training run: score every label verbalizer, take the argmax, compute metrics.

Used each epoch by the Ray Train worker (:mod:`omnimer.training.worker`) on the valid split, and on
the test split for the epoch that model selection picks; also by the GPU bench
(``python -m tests.bench.gpu_train``). The scoring itself is :mod:`omnimer.metrics`.
"""

from __future__ import annotations

import torch

from omnimer import metrics
from omnimer.collate import collate, to_device
from omnimer.labels import LabelSet
from omnimer.tasks import Prompting, main_conversation
from omnimer.training.predictions import Predictions


def choose_verbalizers(tokenizer, labels: LabelSet) -> tuple[tuple[str, ...], list[int]]:
    """Verbalizers whose first tokens differ, so one forward pass scores every label.

    The canonical names are tried first, then the English display names; the loop refuses to train
    with verbalizers that first-token scoring could not tell apart.
    """
    errors = []
    for candidate in (labels.verbalizers, labels.display):
        ids = [tokenizer(word, add_special_tokens=False).input_ids for word in candidate]
        try:
            return tuple(candidate), metrics.check_distinct_first_tokens(ids, list(candidate))
        except ValueError as err:
            errors.append(str(err))
    raise ValueError("no verbalizers with distinct first tokens for this tokenizer: " + "; ".join(errors))


def scoring_of(tokenizer, labels: LabelSet) -> dict:
    """How a run scores its labels, as its record keeps it: the method, the verbalizers (a
    :func:`choose_verbalizers` refusal raises here, before any worker starts), their token ids and
    the first tokens the closed-set scores read."""
    verbalizers, first_ids = choose_verbalizers(tokenizer, labels)
    return {
        "method": "first_token",
        "labels": list(labels.names),
        "verbalizers": list(verbalizers),
        "token_ids": [tokenizer(word, add_special_tokens=False).input_ids for word in verbalizers],
        "first_token_ids": list(first_ids),
    }


class Evaluator:
    """Closed-set evaluation: one forward pass per batch of prompts, scored on the label tokens.

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
        first_ids: list[int],
        frame_size: int,
        eval_batch_size: int,
        filler: dict | None = None,
    ):
        self.processor, self.prompting, self.first_ids = processor, prompting, first_ids
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
        out = model(**to_device(batch.inputs, device), use_cache=False)
        scores = metrics.verbalizer_scores(
            out.logits, batch.inputs["attention_mask"].to(device), self.first_ids
        )
        return batch, scores


def gather(values: list, world_size: int) -> list:
    """Every worker's ``values``, concatenated in rank order (on every worker)."""
    if world_size == 1:
        return values
    gathered: list = [None] * world_size
    torch.distributed.all_gather_object(gathered, values)
    return [v for part in gathered for v in part]
