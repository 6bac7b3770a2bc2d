"""A Train run's reports, handed to the Tune trial that runs it without Tune's polling.

Ray's own ``TuneReportCallback`` puts each report (rank 0's metrics) on a queue actor that the trial's
main thread polls every 0.2 s for as long as the trial trains: five actor calls a second, about
0.02 CPU per trial between the queue actor and the trial's process. On a 2-core machine running two
trials that is 2% of the machine, which the training workers wait for. Here the Train controller puts
each report on the run's queue in :class:`ReportQueues`, and a thread of the trial waits on it with
one pending call, no timeout, and hands each report to ``tune.report``. Tune's main thread then waits
only on its in-process result queue. What Tune receives is the same: rank 0's metrics, plus
``checkpoint_path`` when the report carried a checkpoint.

One :class:`ReportQueues` actor serves every trial of a sweep invocation (the sweep's driver makes it,
:func:`report_queues`, and hands it to the trials with their other shared parameters): an actor per
trial would be one more Ray process per trial slot, each about 1.5 CPU-s to start and 0.006 CPU
while it waits.

Used by :func:`omnimer.sweep.trial.train_driver`::

    with tune_reports(queues=reports) as callback:
        run_trainings(cfgs, callbacks=[callback], ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator

import ray
from ray.train import UserCallback

# Ray's key for a reported checkpoint's path in Tune's results (its TuneReportCallback's).
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY


class ReportQueues:
    """A Ray actor (async, so that every run's pending ``get`` and ``put`` wait side by side): one
    queue of one report per Train run, by the run's key. A run's queue holds one report at a time, so
    the controller's next ``put`` waits until the trial has taken the previous one, as Ray's queue of
    ``maxsize=1`` did; ``end`` never waits (the trial's relay may be gone)."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue] = {}
        self.ended: set[str] = set()

    def _queue(self, key: str) -> asyncio.Queue:
        return self.queues.setdefault(key, asyncio.Queue(maxsize=1))

    async def put(self, key: str, item: dict) -> None:
        await self._queue(key).put(item)

    async def get(self, key: str) -> dict | None:
        """The run's next report; None once it has ended and every report was taken."""
        queue = self._queue(key)
        if queue.empty() and key in self.ended:
            return None
        return await queue.get()

    async def end(self, key: str) -> None:
        """No report after those already put: the relay's ``get`` returns None once it took them."""
        self.ended.add(key)
        queue = self._queue(key)
        if queue.empty():
            queue.put_nowait(None)  # wakes a get that is already waiting

    async def drop(self, key: str) -> None:
        """Forget the run's queue (its relay has ended)."""
        self.queues.pop(key, None)
        self.ended.discard(key)

    async def keys(self) -> list[str]:
        return sorted(self.queues)


def report_queues():
    """A :class:`ReportQueues` actor, owned by the calling process (it ends with it); 0 CPUs."""
    return ray.remote(num_cpus=0)(ReportQueues).remote()


class PutReports(UserCallback):
    """The Train callback (it runs in the Train controller): each report onto the run's queue."""

    def __init__(self, queues, key: str) -> None:
        self.queues, self.key = queues, key

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        item = dict(metrics[0])
        if checkpoint:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        ray.get(self.queues.put.remote(self.key, item))


def relay(queues, key: str, report: Callable[[dict], None], errors: list[BaseException]) -> None:
    """Hand each item of the run's queue to ``report`` until the end marker (None). After an error of
    ``report`` (kept in ``errors``) it still takes the items off the queue, so that the controller's
    next put does not wait forever, and hands over no more."""
    while (item := ray.get(queues.get.remote(key))) is not None:
        if errors:
            continue
        try:
            report(item)
        except Exception as error:  # raised in the trial's thread by tune_reports
            errors.append(error)


@contextlib.contextmanager
def tune_reports(report: Callable[[dict], None] | None = None, queues=None) -> Iterator[PutReports]:
    """Yields the Train callback whose reports reach ``report`` (``tune.report`` by default), in order,
    through ``queues`` (the sweep's :class:`ReportQueues`; without it, one of this run's own).

    On exit, after the Train run ended or failed, every report put so far has been handed over
    before this returns (so Tune sees the last epoch before the trial's function ends), and the run's
    queue is gone (with its own actor, if it had one). An error of ``report`` is raised here, unless
    the run's own error is already on its way; Tune stopping the trial ends the relay's report with
    ``SystemExit``, which ends only the relay.
    """
    if report is None:
        from ray import tune

        report = tune.report
    own = queues is None
    queues = report_queues() if own else queues
    key = uuid.uuid4().hex
    errors: list[BaseException] = []
    thread = threading.Thread(
        target=relay, args=(queues, key, report, errors), name="tune-reports", daemon=True
    )
    thread.start()
    try:
        yield PutReports(queues, key)
    finally:
        ray.get(queues.end.remote(key))
        thread.join()
        if own:
            ray.kill(queues)
        else:
            ray.get(queues.drop.remote(key))
    if errors:
        raise RuntimeError(f"handing a Train report to Tune failed: {errors[0]!r}") from errors[0]
