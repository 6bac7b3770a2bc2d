"""The Ray cluster a command runs on: the one named by ``RAY_ADDRESS`` (inside ``ray job submit``),
else a local Ray on loopback.

Used by ``omnimer ingest`` and ``omnimer train`` (:mod:`omnimer.cli`) and by
``sweeps/aux_ablation.py`` before they start any Ray work.
"""

from __future__ import annotations

import os


def connect(num_cpus: int | None = None, worker_logs: bool = True) -> None:
    """Join the cluster named by RAY_ADDRESS, else start a local Ray (``num_cpus``: all by default).

    ``worker_logs=False`` keeps the workers' output off this terminal when Ray is local (a sweep: each
    run writes its own ``train.log``, and Ray keeps every process's log under its session dir). On a
    cluster, ``ray job logs`` shows them as usual.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=worker_logs,
        )
    quiet_ray_data()


def state_api_reachable(timeout: float = 10) -> bool:
    """Whether this cluster's state API answers (``ray.util.state``; the dashboard serves it): not on
    a local Ray started by :func:`connect`, which has no dashboard. Asks the cluster this process is
    connected to, by its address: another Ray on the same machine makes the default ambiguous."""
    import ray
    from ray.util.state import list_nodes
    from ray.util.state.exception import RayStateApiException

    address = ray.get_runtime_context().gcs_address
    try:
        list_nodes(address=address, limit=1, timeout=timeout, raise_on_missing_output=False)
    except RayStateApiException:
        return False
    return True


def quiet_ray_data() -> None:
    """No Ray Data progress in this process: a non-interactive terminal (CI, a log file, ``ray job
    logs``) gets it as dozens of INFO lines per dataset. The commands show their own progress."""
    import logging

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # Also its one-off notes ("execution finished in 7.5 s"), and the warning that says what we just did.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
