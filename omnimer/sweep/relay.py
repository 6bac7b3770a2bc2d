"""A Train run's reports, handed to the Tune trial that runs it without Tune's polling.

Ray's own ``TuneReportCallback`` puts each report (rank 0's metrics) on a queue actor that the trial's
main thread polls every 0.2 s for as long as the trial trains: five actor calls a second, about
0.02 CPU per trial between the queue actor and the trial's process. On a 2-core machine running two
trials that is 2% of the machine, which the training workers wait for. Here the Train controller puts
each report on a queue actor of the trial's own, and a thread of the trial waits on it with one
pending call, no timeout, and hands each report to ``tune.report``. Tune's main thread then waits only
on its in-process result queue. What Tune receives is the same: rank 0's metrics, plus
``checkpoint_path`` when the report carried a checkpoint.

Used by :func:`omnimer.sweep.trial.train_driver`::

    with tune_reports() as callback:
        run_trainings(cfgs, callbacks=[callback], ...)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from ray.train import UserCallback

# Ray's key for a reported checkpoint's path in Tune's results (its TuneReportCallback's).
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY


class PutReports(UserCallback):
    """The Train callback (it runs in the Train controller): each report onto the trial's queue."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        item = dict(metrics[0])
        if checkpoint:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.queue.put(item)


def relay(queue, report: Callable[[dict], None], errors: list[BaseException]) -> None:
    """Hand each item of ``queue`` to ``report`` until the end marker (None). After an error of
    ``report`` (kept in ``errors``) it still takes the items off the queue, so that the controller's
    next put does not wait forever, and hands over no more."""
    while (item := queue.get()) is not None:
        if errors:
            continue
        try:
            report(item)
        except Exception as error:  # raised in the trial's thread by tune_reports
            errors.append(error)


@contextlib.contextmanager
def tune_reports(report: Callable[[dict], None] | None = None) -> Iterator[PutReports]:
    """Yields the Train callback whose reports reach ``report`` (``tune.report`` by default), in order.

    On exit, after the Train run ended or failed, every report put so far has been handed over
    before this returns (so Tune sees the last epoch before the trial's function ends), and the
    queue actor is gone. An error of ``report`` is raised here, unless the run's own error is
    already on its way; Tune stopping the trial ends the relay's report with ``SystemExit``, which
    ends only the relay.
    """
    from ray.util.queue import Full, Queue

    if report is None:
        from ray import tune

        report = tune.report
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    errors: list[BaseException] = []
    thread = threading.Thread(target=relay, args=(queue, report, errors), name="tune-reports", daemon=True)
    thread.start()
    try:
        yield PutReports(queue)
    finally:
        while thread.is_alive():
            try:
                queue.put(None, timeout=1.0)
                break
            except Full:
                continue
        thread.join()
        queue.shutdown(force=True)
    if errors:
        raise RuntimeError(f"handing a Train report to Tune failed: {errors[0]!r}") from errors[0]
