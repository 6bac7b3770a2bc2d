"""The relay of a Train run's reports to its Tune trial (omnimer.sweep.relay), on a local Ray: in
order, all before the trial's function returns, through a callback shipped to another process, one
actor's queues shared by every trial of a sweep, and Tune refusing a report."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest


def _relay_threads() -> list:
    return [thread for thread in threading.enumerate() if thread.name == "tune-reports"]


def test_train_reports_reach_tune_in_order_and_all_before_the_relay_returns(ray_local):
    """The Train controller's reports (rank 0's metrics, and a checkpoint's path) reach Tune's report
    in order, every one before tune_reports returns, through a callback that Ray ships to another
    process; then the relay's thread has ended."""
    from omnimer.sweep.relay import CHECKPOINT_PATH_KEY, tune_reports

    def controller(callback) -> None:  # what Train's controller does with the callback, elsewhere
        for epoch in (1, 2, 3):
            checkpoint = SimpleNamespace(path=f"/runs/a/checkpoint_{epoch}") if epoch == 2 else None
            callback.after_report(None, [{"epoch": epoch}, {"epoch": -epoch}], checkpoint)

    got = []
    with tune_reports(report=got.append) as callback:
        ray_local.get(ray_local.remote(num_cpus=0)(controller).remote(callback))
    assert got == [{"epoch": 1}, {"epoch": 2, CHECKPOINT_PATH_KEY: "/runs/a/checkpoint_2"}, {"epoch": 3}]
    assert _relay_threads() == []


def test_trials_sharing_the_sweeps_queues_each_get_their_own_reports_in_order(ray_local):
    """Two trials' runs report at once through one ReportQueues actor (the sweep's): each trial gets
    its own run's reports, in order, none of the other's; once both relays ended, the actor keeps no
    queue of theirs."""
    from omnimer.sweep.relay import report_queues, tune_reports

    def controller(callback, run: str) -> None:
        for epoch in range(1, 6):
            callback.after_report(None, [{"run": run, "epoch": epoch}], None)

    queues = report_queues()
    got_a, got_b = [], []
    with (
        tune_reports(report=got_a.append, queues=queues) as a,
        tune_reports(report=got_b.append, queues=queues) as b,
    ):
        remote = ray_local.remote(num_cpus=0)(controller)
        ray_local.get([remote.remote(a, "a"), remote.remote(b, "b")])
    assert got_a == [{"run": "a", "epoch": e} for e in range(1, 6)]
    assert got_b == [{"run": "b", "epoch": e} for e in range(1, 6)]
    assert ray_local.get(queues.keys.remote()) == []
    assert _relay_threads() == []
    ray_local.kill(queues)


def test_a_report_tune_refuses_fails_the_trial_without_stalling_the_run(ray_local):
    """Tune refusing a report (here on the first) fails the trial once the run has ended, with the
    cause; the later reports are still taken off the queue, so the controller never waits on it. A
    run's own error passes through the relay unchanged."""
    from omnimer.sweep.relay import tune_reports

    def refuse(metrics: dict) -> None:
        raise ValueError(f"cannot report {metrics}")

    with pytest.raises(RuntimeError, match=r"handing a Train report to Tune failed: ValueError\("):
        with tune_reports(report=refuse) as callback:
            for epoch in (1, 2, 3):
                callback.after_report(None, [{"epoch": epoch}], None)
    got = []
    with pytest.raises(KeyError, match="the run's own"):
        with tune_reports(report=got.append) as callback:
            callback.after_report(None, [{"epoch": 1}], None)
            raise KeyError("the run's own")
    assert got == [{"epoch": 1}]
    assert _relay_threads() == []


def test_a_relay_that_tune_stopped_does_not_hold_up_the_trials_end(ray_local):
    """Tune stopping a trial ends the relay's report with SystemExit; a report the controller put
    after that stays on the queue, and the trial's function still returns (the end marker never
    waits for room on the queue)."""
    from omnimer.sweep.relay import report_queues, tune_reports

    def stopped(metrics: dict) -> None:
        raise SystemExit

    queues = report_queues()
    with tune_reports(report=stopped, queues=queues) as callback:
        callback.after_report(None, [{"epoch": 1}], None)
        for _ in range(100):
            if not _relay_threads():
                break
            threading.Event().wait(0.05)
        callback.after_report(None, [{"epoch": 2}], None)  # the queue's one place, never taken
    assert _relay_threads() == []
    assert ray_local.get(queues.keys.remote()) == []
    ray_local.kill(queues)
