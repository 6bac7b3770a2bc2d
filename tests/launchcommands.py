"""The launch commands the project ships (in configs, manifests, docs), parsed as the programs they
run parse them: ``sweeps/aux_ablation.py`` with its own parser and list parsers, ``omnimer train``
with the CLI's. Used by tests/test_configs.py, which checks every shipped command with these."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from omnimer import cli  # noqa: E402
from omnimer.config import TARGETS, load_train_config  # noqa: E402
from omnimer.sweep import request as sweep  # noqa: E402
from sweeps import aux_ablation  # noqa: E402

SHARED_MOUNT = "/mnt/shared"
SWEEP_SCRIPT = "sweeps/aux_ablation.py"


def is_shared(location: str) -> bool:
    """Whether every node of the shipped clusters sees ``location`` on the shared mount."""
    return location == SHARED_MOUNT or location.startswith(SHARED_MOUNT + "/")


class InterfaceError(ValueError):
    pass


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, raising instead of exiting (argparse writes the reason to stderr)."""
    try:
        return parser.parse_args(argv)
    except SystemExit:
        raise InterfaceError(
            f"{parser.prog} refuses {shlex.join(argv)!r} (its reason is on stderr)"
        ) from None


def parse_sweep(argv: list[str]) -> argparse.Namespace:
    """The arguments as sweeps/aux_ablation.py reads them: its own parser, and its list parsers."""
    args = _parse(aux_ablation.build_parser(), argv)
    if args.mode not in sweep.MODES or args.target not in TARGETS:
        raise InterfaceError(f"--mode {args.mode} / --target {args.target}: unknown")
    args.seeds = sweep.parse_seeds(args.seeds)
    args.subsets = sweep.parse_subsets(args.subsets)
    return args


def parse_launch(command: str) -> tuple[str, argparse.Namespace]:
    """Parse the sweep or ``omnimer train`` command inside ``command`` (which may be a ``ray job submit``).

    Also checks the files it names: ``--config`` loads with its overrides, ``--runtime-env`` exists.
    """
    tokens = shlex.split(command)
    for i, token in enumerate(tokens[:-1]):
        if token == "--runtime-env":
            assert (REPO / tokens[i + 1]).is_file(), f"--runtime-env {tokens[i + 1]} does not exist"
    for i in range(len(tokens) - 1):
        if tokens[i] in ("python", "python3") and tokens[i + 1] == SWEEP_SCRIPT:
            kind, args = "sweep", parse_sweep(tokens[i + 2 :])
            break
        if tokens[i : i + 2] == ["omnimer", "train"]:
            kind, args = "train", _parse(cli.build_parser(), tokens[i + 1 :])
            break
    else:
        raise AssertionError(f"no `python {SWEEP_SCRIPT} ...` or `omnimer train ...` in {command!r}")
    if args.config is None:  # both also run without one (the embedded default, or overrides alone)
        raise InterfaceError(f"a shipped command names the --config it runs: {command!r}")
    config = REPO / args.config
    assert config.is_file(), f"--config {args.config} does not exist in the repository"
    load_train_config(str(config), args.overrides)
    return kind, args


def check_cluster_sweep_command(command: str) -> argparse.Namespace:
    """A sweep submitted to a cluster: the interface's flags, a config that exists, shared storage."""
    kind, args = parse_launch(command)
    assert kind == "sweep", f"a cluster job runs {SWEEP_SCRIPT}, not {command!r}"
    # An S3 prefix is shared too (only the experiments: the data stays on the mount).
    assert is_shared(args.storage_path) or args.storage_path.startswith("s3://"), (
        f"--storage-path {args.storage_path} is not under {SHARED_MOUNT} nor in S3: trials on every "
        "node write their dirs there"
    )
    return args
