"""The ``TorchTrainer`` every run is fitted with (:func:`omnimer.training.driver.build_trainer`): Ray
Train's, without its placement-group cleaner where the cluster has no state API to serve it.

Ray Train 2.60 starts a ``PlacementGroupCleaner`` actor for each Train run: a detached process that
asks Ray's state API once a second whether the run's controller is alive, to remove the workers'
placement group if the controller dies without doing so. The state API is served by the dashboard.
A local Ray started by :func:`omnimer.cluster.connect` has none (the dashboard's processes cost CPU the
trials need), so there the cleaner can never see the controller die: it logs "Failed to query Ray
Train Controller actor state" every second (79 of the 160 lines of an ``omnimer train`` of the smoke
config) and removes nothing, while its process costs as much as any other actor and the controller
waits for it to start before the workers train. On a cluster (``ray start --head``, KubeRay) the
dashboard answers and the cleaner stays.
"""

from __future__ import annotations

import logging

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

from omnimer.cluster import state_api_reachable

log = logging.getLogger(__name__)


class Trainer(TorchTrainer):
    """``TorchTrainer``, less the ``PlacementGroupCleaner`` where the state API is unreachable."""

    def _create_default_callbacks(self) -> list:
        callbacks = super()._create_default_callbacks()
        if state_api_reachable():
            return callbacks
        log.debug("no Ray state API on this cluster: the run has no placement-group cleaner")
        return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]
