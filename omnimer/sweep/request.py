"""A sweep request: what the user asked ``sweeps/aux_ablation.py`` for, validated before any Ray work
starts, stored as ``<experiment>/sweep.json`` and compared on a re-run to resume the same sweep.

Built by :func:`plan_sweep` from the script's arguments; read by :mod:`omnimer.sweep.tuner`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

from omnimer import provenance, storage
from omnimer.aux_tasks import AUX_TASKS, enabled_tasks
from omnimer.config import TARGETS, TrainConfig, load_train_config
from omnimer.subsets import LATTICE, SubsetError, parse_subset, subset_name
from omnimer.training.record import comparable_config, differences

MODES = ("ablation", "search")
SWEEP_FILE = "sweep.json"
SMOKE_CONFIG = provenance.REPO / "sweeps" / "configs" / "smoke.yaml"
# Settings a smoke test forces on top of the config: a few steps per trial, one worker per trial so
# two trials share a 2-core box.
SMOKE_OVERRIDES = [
    "train.epochs=2",
    "train.max_steps_per_epoch=2",
    "train.batch_size=4",
    "train.num_workers=1",
    "train.use_gpu=false",
    "train.cpus_per_worker=0.125",
    "model.dtype=float32",
]
# What makes two invocations the same sweep: what the user asked for. Not where the code was unpacked
# (repository paths are repo-relative), not the code's version (invocations.json records it), and not
# the base's run section (each trial's comes from the experiment dir).
REQUEST_KEYS = ("mode", "target", "seeds", "subsets", "num_samples", "runs_per_trial", "base")


class SweepError(ValueError):
    """A bad sweep request, reported before any trial starts."""


@dataclasses.dataclass(frozen=True)
class SweepRequest:
    """A validated sweep: mode, where it lives, which cells or how many samples, and the base config
    every trial starts from (``base``, a ``TrainConfig`` as a dict)."""

    mode: str
    name: str
    storage: str
    experiment_dir: str
    config_path: str
    target: str
    seeds: list[int]
    subsets: list[str] | None
    num_samples: int | None
    smoke_test: bool
    base: dict
    # Ablation: runs (cell × seed) each Tune trial trains one after another in one worker group.
    runs_per_trial: int = 1

    @property
    def runs_dir(self) -> str:
        return storage.join(self.experiment_dir, "runs")

    def with_base(self, base: dict) -> SweepRequest:
        return dataclasses.replace(self, base=base)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def plan_sweep(
    *,
    mode: str,
    name: str,
    storage_path: str,
    config: str | None,
    target: str = "emotion",
    seeds: str = "0,1",
    subsets: str | None = None,
    num_samples: int = 16,
    smoke_test: bool = False,
    best: dict | None = None,
    overrides: list[str] = (),
    runs_per_trial: int = 1,
) -> SweepRequest:
    """Validate a request and resolve its base config; nothing is created for a refused request.

    ``best`` is a set of config sections (model, train, loss) laid over the base (``--best-of``).
    """
    if mode not in MODES:
        raise SweepError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    if target not in TARGETS:
        raise SweepError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    seed_list = parse_seeds(seeds)
    if subsets is not None and mode != "ablation":
        raise SweepError("--subsets picks cells of the ablation grid; it has no meaning with --mode search")
    subset_names = parse_subsets(subsets)
    if num_samples < 1:
        raise SweepError(f"--num-samples must be >= 1, got {num_samples}")
    if runs_per_trial < 1:
        raise SweepError(f"--runs-per-trial must be >= 1, got {runs_per_trial}")
    if runs_per_trial > 1 and mode != "ablation":
        raise SweepError(
            "--runs-per-trial groups the runs of the ablation grid; a search's ASHA stops each run on "
            "its own, so every search trial trains one run"
        )
    if not name or "/" in name:
        raise SweepError(f"--name {name!r} must be a plain name (the experiment dir's)")
    config_path = config or (str(SMOKE_CONFIG) if smoke_test else None)
    if config_path is None:
        raise SweepError("--config is required (e.g. sweeps/configs/demo.yaml), unless --smoke-test")
    if not Path(config_path).is_file():
        raise SweepError(f"--config {config_path}: no such file")
    overrides = [*(SMOKE_OVERRIDES if smoke_test else []), *overrides, f"data.target={target}"]
    try:
        values = load_train_config(config_path, overrides).to_dict()
        if best:
            values = merge_best(values, best, mode)
            TrainConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise SweepError(f"{config_path}: {err}") from None
    if mode == "ablation":
        off = [t for t in AUX_TASKS if t not in enabled_tasks(values["loss"])]
        if off:
            raise SweepError(
                f"{config_path}: the ablation grid enables each aux task in turn, but loss."
                f"{off[0].weight_key} is 0; set it to the weight the task should have when enabled (e.g. 0.3)"
            )
    root = storage_dir(storage_path)  # last: a refused request creates nothing
    experiment_dir = storage.join(root, name)
    # Every trial's run section is the sweep's: runs/<run-name> under the experiment.
    values["run"] = {"output_dir": storage.join(experiment_dir, "runs"), "name": "run"}
    return SweepRequest(
        mode=mode,
        name=name,
        storage=root,
        experiment_dir=experiment_dir,
        config_path=provenance.repo_relative(str(Path(config_path).resolve())),
        target=target,
        seeds=seed_list,
        subsets=subset_names if mode == "ablation" else None,
        num_samples=num_samples if mode == "search" else None,
        smoke_test=smoke_test,
        base=values,
        runs_per_trial=runs_per_trial,
    )


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: comma-separated distinct integers."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SweepError(f"--seeds {text!r} is empty: give a comma-separated list such as 0,1,2")
    try:
        seeds = [int(item) for item in items]
    except ValueError:
        raise SweepError(f"--seeds {text!r} must be comma-separated integers such as 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r} repeats a seed")
    return seeds


def parse_subsets(text: str | None) -> list[str]:
    """``--subsets``: the names of the ablation cells to run, in lattice order (all 8 without it).

    Each item is ``none``, ``all`` or a ``+``-joined list of text, face, prosody (``text+prosody``),
    read as ``python -m analysis`` reads a subset name.
    """
    names = [subset_name(s) for s in LATTICE]
    if text is None:
        return names
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SweepError(f"--subsets {text!r} is empty: give e.g. none,text,all")
    chosen = set()
    for item in items:
        try:
            chosen.add(subset_name(parse_subset(item)))
        except SubsetError as err:
            raise SweepError(f"--subsets: {err}") from None
    if len(chosen) != len(items):
        raise SweepError(f"--subsets {text!r} names a subset twice")
    return [name for name in names if name in chosen]


def merge_best(base: dict, best: dict, mode: str) -> dict:
    """Base config with the best-of sections laid over it. In ablation mode an aux weight of 0 in the
    best config does not override the base: the grid decides which tasks are off."""
    values = copy.deepcopy(base)
    for section, entries in best.items():
        for key, value in entries.items():
            if section == "model" and key == "lora":
                values["model"].setdefault("lora", {}).update(value)
            elif mode == "ablation" and key.startswith("aux_weight_") and not value:
                continue
            else:
                values.setdefault(section, {})[key] = value
    return values


def storage_dir(text: str) -> str:
    """The storage root, checked writable: an absolute local path, or an object store URI as given."""
    try:
        storage.check_location(text)
        if storage.is_remote(text):
            location = text.rstrip("/")
            storage.check_writable(location)
            return location
    except storage.StorageError as err:
        raise SweepError(f"--storage-path: {err}") from None
    path = Path(text).resolve()
    if provenance.inside_ray_package(path):
        raise SweepError(
            f"--storage-path {text!r} resolves to {path}, inside this Ray job's unpacked working dir, "
            "which the next Ray session does not have: give an absolute path on storage every node "
            "sees (e.g. /mnt/shared/experiments) or an s3:// URI"
        )
    try:
        storage.check_writable(path)
    except OSError as err:
        raise SweepError(
            f"--storage-path {text!r} is not writable ({err.strerror}): choose another"
        ) from None
    return str(path)


def request_view(sweep: dict) -> dict[str, object]:
    """The request of a sweep as flat ``key: value`` pairs, the base config's keys dotted (``train.lr``)."""
    sweep = json.loads(json.dumps(sweep))
    if sweep.get("mode") == "ablation" and sweep.get("subsets") is None:  # written before --subsets
        sweep["subsets"] = parse_subsets(None)
    sweep.setdefault("runs_per_trial", 1)  # written before --runs-per-trial
    flat: dict[str, object] = {k: sweep.get(k) for k in REQUEST_KEYS if k != "base"}
    base = comparable_config(sweep.get("base") or {})
    flat.update({key: value for key, value in base.items() if not key.startswith("run.")})
    return flat


def check_same_sweep(experiment_dir: Path | str, request: SweepRequest | dict) -> bool:
    """True if the experiment dir holds this very sweep (to resume); raise if it holds another.

    The same request from another copy of the code (a new Ray session's working dir, another machine
    that sees the same storage, a newer commit) is the same sweep.
    """
    path = storage.join(experiment_dir, SWEEP_FILE)
    if not storage.is_file(path):
        return False
    current = request.to_json() if isinstance(request, SweepRequest) else request
    changed = differences(request_view(storage.read_json(path)), request_view(current))
    if changed:
        raise SweepError(
            f"{experiment_dir} holds a sweep started with a different request ({changed}); re-run the "
            "original command to resume it, or choose another --name"
        )
    return True
