"""One trial of a sweep: the spec of each of its runs (which ablation cell or which sampled
hyperparameters, which seed), their run configs, and :func:`train_driver`, the function Ray Tune runs
for it.

Tune calls :func:`train_driver` with the trial's param dict (:mod:`omnimer.sweep.tuner` builds the
grid or the Optuna search). A trial trains one run, or, in a grid with ``--runs-per-trial`` k > 1,
k runs (``runs``: [subset, seed] pairs, :func:`run_groups`) one after another in one worker group
(:func:`omnimer.training.driver.run_trainings`); every epoch is reported back to Tune
(:mod:`omnimer.sweep.relay`).
"""

from __future__ import annotations

import copy
import dataclasses
import json

from omnimer import provenance
from omnimer.aux_tasks import AUX_TASKS, enabled_tasks
from omnimer.config import TrainConfig, apply_overrides
from omnimer.subsets import Subset, subset_name


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """A trial as Tune hands it over: the sweep's constants (mode, experiment, runs dir, base config),
    the cell (ablation: ``subset``; search: the ``search`` parameters Optuna sampled) and the seed,
    plus Tune's trial id and the sweep invocation that runs it."""

    mode: str
    experiment: str
    runs_dir: str
    base: dict
    seed: int
    subset: Subset | None = None
    search: dict = dataclasses.field(default_factory=dict)
    trial_id: str | None = None
    invocation: int | None = None

    @classmethod
    def from_tune(cls, params: dict, trial_id: str | None = None, invocation: int | None = None) -> TrialSpec:
        """A spec from Tune's param dict. In a search, every key that is not one of the sweep's
        constants is a sampled parameter (Optuna's define-by-run space returns them side by side)."""
        names = {field.name for field in dataclasses.fields(cls)}
        search = {k: v for k, v in params.items() if k not in names} if params["mode"] == "search" else {}
        return cls(
            mode=params["mode"],
            experiment=params["experiment"],
            runs_dir=params["runs_dir"],
            base=params["base"],
            seed=params["seed"],
            subset=tuple(params["subset"]) if params.get("subset") is not None else None,
            search=search,
            trial_id=trial_id if trial_id is not None else params.get("trial_id"),
            invocation=invocation,
        )

    @property
    def run_name(self) -> str:
        """``<subset>-seed<seed>`` for an ablation cell, ``trial-<trial id>`` for a search trial."""
        if self.mode == "ablation":
            return f"{subset_name(self.subset)}-seed{self.seed}"
        return f"trial-{self.trial_id}"

    def config(self) -> TrainConfig:
        """The trial's run config: the base with the cell's λ (or the sampled parameters) and seed."""
        if self.mode == "ablation":
            values = ablation_overrides(self.base, self.subset, self.seed)
        else:
            values = search_overrides(self.base, self.search)
            values["train"]["seed"] = self.seed
        values["run"] = {"output_dir": self.runs_dir, "name": self.run_name}
        # A trial restored from the Tune state of an earlier version may hold the DeepSpeed config as a
        # path into that Ray session's working dir: this session resolves it in its own copy.
        values["train"]["deepspeed_config"] = provenance.repo_relative(values["train"]["deepspeed_config"])
        return TrainConfig.from_dict(values)

    def sweep_block(self, cfg: TrainConfig) -> dict:
        """The record's ``sweep`` block: experiment, mode, trial id, seed, subset (λ > 0), invocation."""
        block = {
            "experiment": self.experiment,
            "mode": self.mode,
            "trial_id": self.trial_id or self.run_name,
            "seed": cfg.train.seed,
            "subset": {task.name: task in enabled_tasks(cfg.loss) for task in AUX_TASKS},
        }
        if self.invocation is not None:
            block["invocation"] = self.invocation
        return block


def ablation_overrides(base: dict, subset: Subset, seed: int) -> dict:
    """The trial config of one ablation cell: a disabled task gets λ = 0, an enabled one keeps its λ."""
    values = copy.deepcopy(base)
    for task, enabled in zip(AUX_TASKS, subset, strict=True):
        if not enabled:
            values["loss"][task.weight_key] = 0.0
    values["train"]["seed"] = seed
    return values


def search_overrides(base: dict, params: dict) -> dict:
    """The trial config of one search trial: the sampled parameters set into the base config."""
    params = dict(params)
    ratio = params.pop("lora_alpha_over_rank", None)
    dotted = [f"{key}={json.dumps(value)}" for key, value in params.items()]
    values = apply_overrides(base, dotted)
    if ratio is not None:
        values["model"]["lora"]["alpha"] = float(ratio * values["model"]["lora"]["rank"])
    return values


def trial_specs(params: dict, trial_id: str | None = None, invocation: int | None = None) -> list[TrialSpec]:
    """The runs of one Tune trial, in order: its own cell and seed, or a grouped grid trial's ``runs``."""
    if params.get("runs") is None:
        return [TrialSpec.from_tune(params, trial_id, invocation)]
    return [
        TrialSpec.from_tune({**params, "subset": subset, "seed": seed}, trial_id, invocation)
        for subset, seed in params["runs"]
    ]


def grid_runs(cells: list, seeds: list[int]) -> list[list]:
    """The grid's runs ([subset, seed]) seed-major: every cell of the first seed, then the next seed's."""
    return [[cell, seed] for seed in seeds for cell in cells]


def chunks(items: list, size: int) -> list[list]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_groups(cells: list[list[bool]], seeds: list[int], size: int) -> list[list[list]]:
    """The grid's runs (:func:`grid_runs`) in consecutive groups of ``size``: with ``size`` = the
    number of cells, each group is one seed's cells, so the groups cost the same."""
    return chunks(grid_runs(cells, seeds), size)


def group_name(run_names: list[str]) -> str:
    """The Train run of a trial (its checkpoints): the run's own for one run, ``group-<first run>``
    for several."""
    return run_names[0] if len(run_names) == 1 else f"group-{run_names[0]}"


def train_driver(
    params: dict, dataset=None, invocation: int | None = None, scoring: dict | None = None, reports=None
) -> None:
    """One Tune trial: the Ray Train run of its config(s), reporting each epoch to Tune.

    ``dataset`` is the sweep's shards, read once and shared by every trial, ``invocation`` the
    number of the sweep invocation that runs the trial, ``scoring`` the sweep's scoring, resolved
    once (:func:`omnimer.training.driver.resolved_scoring`), and ``reports`` the sweep's
    :class:`~omnimer.sweep.relay.ReportQueues`; all four come through ``tune.with_parameters``, so
    none is kept in Tune's state: a resumed sweep passes its own.
    """
    from ray import tune

    from omnimer.sweep.relay import tune_reports
    from omnimer.training.driver import finished_record, run_trainings

    specs = trial_specs(params, tune.get_context().get_trial_id(), invocation)
    cfgs = [spec.config() for spec in specs]
    previous = [finished_record(cfg) for cfg in cfgs]
    if all(record is not None for record in previous):
        # The runs finished but Tune did not hear of it (the sweep's driver died in between):
        # report the last one's result once instead of training them again.
        tune.report(previous[-1].state.report())
        return
    # A failed fit leaves the unfinished records `running`: the sweep settles them once Tune has
    # ended every trial (tuner.settle_records). ASHA stopping a trial kills its Train run, so this
    # driver sees a failure; and its thread can outlive tuner.fit(), so a record written here could
    # land after the sweep settled it as `stopped`.
    with tune_reports(queues=reports) as report_to_tune:
        run_trainings(
            cfgs,
            callbacks=[report_to_tune],
            sweeps=[spec.sweep_block(cfg) for spec, cfg in zip(specs, cfgs, strict=True)],
            dataset=dataset,
            record_failure=False,
            group_name=group_name([spec.run_name for spec in specs]),
            scoring=scoring,
        )
