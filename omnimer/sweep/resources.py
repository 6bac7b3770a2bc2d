"""How many trials of a sweep run at once on the connected Ray cluster, and what each reserves.

Used by ``sweeps/aux_ablation.py`` (to refuse a trial the cluster cannot hold, before anything starts)
and by :func:`omnimer.sweep.tuner.run_sweep`.
"""

from __future__ import annotations

from omnimer.config import TrainConfig
from omnimer.sweep.request import SweepError

# The Tune trial itself (omnimer.sweep.trial.train_driver) only waits on its Train run.
DRIVER_CPUS = 0.125
# Kept free of trials: each Train worker reads its shards through Ray Data, whose file-listing task
# needs a whole CPU; with every CPU reserved by trials the reads never schedule and the sweep hangs.
DATA_CPUS = 1.0


def cluster_slots(cfg: TrainConfig) -> tuple[int, dict]:
    """How many trials run at once on this cluster, and the resources of one trial's driver.

    GPU: cluster GPUs / GPUs per trial (one per Train worker). CPUs are reserved fractionally (a
    driver takes DRIVER_CPUS, a worker ``train.cpus_per_worker``) so a 2-core box runs trials, and
    DATA_CPUS stay free for Ray Data's reads.
    """
    import ray

    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 0)) - DATA_CPUS
    cpus_per_trial = DRIVER_CPUS + cfg.train.num_workers * cfg.train.cpus_per_worker
    if cpus_per_trial > cpus:
        raise SweepError(
            f"a trial needs {cpus_per_trial:g} CPUs ({DRIVER_CPUS:g} driver + train.num_workers="
            f"{cfg.train.num_workers} × train.cpus_per_worker={cfg.train.cpus_per_worker:g}) but the "
            f"cluster has {cpus:g} to give ({DATA_CPUS:g} more stay free for Ray Data's reads): lower "
            "train.cpus_per_worker or train.num_workers"
        )
    slots = int(cpus // cpus_per_trial)
    if cfg.train.use_gpu:
        gpus = int(resources.get("GPU", 0))
        per_trial = cfg.train.num_workers
        if per_trial > gpus:
            raise SweepError(
                f"a trial needs {per_trial} GPUs (train.num_workers={per_trial} with train.use_gpu=true) "
                f"but the cluster has {gpus}: lower train.num_workers or add GPU nodes (an autoscaling "
                "cluster must start with enough min_workers)"
            )
        slots = min(slots, gpus // per_trial)
    return slots, {"CPU": DRIVER_CPUS}
