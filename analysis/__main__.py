"""Command line of the analysis: tables, plots and a Markdown report from an experiment's records.

    python -m analysis tables  EXP_DIR [EXP_DIR ...] [--target emotion|sentiment]
                               [--format md|latex|csv] [--out DIR]
    python -m analysis plots   EXP_DIR --out DIR
    python -m analysis report  EXP_DIR --out DIR
    python -m analysis summary EXP_DIR [EXP_DIR ...]          # ablation table + Shapley lines

EXP_DIR is a sweep's experiment dir ``<storage-path>/<name>`` (or any dir holding ``record.json``
files, e.g. ``runs/demo/train``), or its URI in an object store (``s3://bucket/experiments/demo``,
read through ``omnimer.storage``; endpoint and credentials from the usual ``AWS_*`` variables).
``tables`` prints to stdout without ``--out`` (CSV: the first table only, the ablation when there is
one, unless ``--table`` picks another). Bad input exits with code 2 and a message saying what is
wrong, where, and what to do.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from analysis import attribution, records
from analysis.records import AnalysisError
from analysis.report import (
    ablation_summary,
    analyse,
    build_tables,
    write_plots,
    write_report,
    write_tables,
)
from analysis.tables import FORMATS
from omnimer import storage

TABLE_NAMES = ("all", "ablation", "attribution", "per_class_f1", "search_summary")


def _exp_dir(text: str) -> Path | str:
    """An EXP_DIR argument: an object store URI stays a string (Path would fold its ``//``); a local
    path or ``file://`` URI becomes a Path."""
    return text if storage.is_remote(text) else storage.local_path(text)


def _common(parser: argparse.ArgumentParser, several: bool = True) -> None:
    parser.add_argument(
        "exp_dirs",
        nargs="+" if several else 1,
        type=_exp_dir,
        metavar="EXP_DIR",
        help="experiment dir(s): local paths or URIs (s3://bucket/prefix/name)",
    )
    parser.add_argument("--target", choices=("emotion", "sentiment"), help="keep the records of this target")
    parser.add_argument("--split", choices=records.SPLITS, default="test", help="metrics of this split")
    parser.add_argument(
        "--subsets",
        help="per-class F1 / confusion: comma-separated subsets, e.g. none,face,text+prosody,all "
        "(default: none, the best, all)",
    )
    parser.add_argument("--top-k", type=int, default=10, help="search summary: trials shown")
    parser.add_argument(
        "--bootstrap", type=int, default=attribution.DEFAULT_BOOTSTRAP, help="bootstrap replicates"
    )
    parser.add_argument(
        "--ci",
        choices=attribution.CI_METHODS,
        default="residuals",
        help="interval method: resample residuals of the subset + seed model (default), or whole seeds "
        "(only sensible with many seeds; see analysis/stats.py)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and permutation RNG")
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="average experiment dirs whose config, dataset or model differ (the table says so)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tables = commands.add_parser("tables", help="ablation / attribution / per-class / search tables")
    _common(tables)
    tables.add_argument("--format", choices=FORMATS, default="md")
    tables.add_argument("--table", choices=TABLE_NAMES, help="only this table (default: all; csv: ablation)")
    tables.add_argument("--out", type=Path, help="write one file per table here instead of stdout")
    plots = commands.add_parser("plots", help="PNG figures")
    _common(plots)
    plots.add_argument("--out", type=Path, required=True)
    report = commands.add_parser("report", help="report.md with the tables and the figures")
    _common(report)
    report.add_argument("--out", type=Path, required=True)
    summary = commands.add_parser("summary", help="the ablation table and the Shapley lines")
    _common(summary)
    return parser


def _subsets(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s.strip()] if text else None


def _analyse(args: argparse.Namespace):
    return analyse(
        args.exp_dirs,
        args.target,
        args.split,
        args.bootstrap,
        args.seed,
        args.ci,
        allow_mixed=args.allow_mixed,
    )


def _run_tables(args: argparse.Namespace) -> None:
    experiment = _analyse(args)
    rendered = build_tables(experiment, args.format, _subsets(args.subsets), args.top_k)
    # Several CSV tables in one stream would not parse: stdout gets the first (the ablation, if any).
    choice = args.table or (next(iter(rendered)) if args.format == "csv" and args.out is None else "all")
    if choice != "all":
        if choice not in rendered:
            raise AnalysisError(
                f"{experiment.name} has no {choice} table (it has: {', '.join(rendered) or 'none'})"
            )
        rendered = {choice: rendered[choice]}
    if args.out is not None:
        for path in write_tables(rendered, args.out, args.format):
            print(path)
        return
    for i, (name, text) in enumerate(rendered.items()):
        print(_stdout_section(name, text, args.format, heading=len(rendered) > 1, first=i == 0), end="")


def _stdout_section(name: str, text: str, fmt: str, heading: bool, first: bool) -> str:
    """One table for stdout; with several, a heading each (and the YAML fenced or commented out)."""
    if name.endswith(".yaml"):
        text = (
            f"```yaml\n{text}```\n" if fmt == "md" else "".join(f"% {line}\n" for line in text.splitlines())
        )
    if not heading:
        return text
    marker = "## " if fmt == "md" else "% "
    return f"{'' if first else chr(10)}{marker}{name}\n\n{text}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "tables":
            _run_tables(args)
        elif args.command == "summary":
            print(ablation_summary(args.exp_dirs, args.target, args.split, args.allow_mixed), end="")
        else:
            experiment = _analyse(args)
            if args.command == "plots":
                for path in write_plots(experiment, args.out, _subsets(args.subsets)).values():
                    print(path)
            else:
                print(write_report(experiment, args.out, args.top_k, _subsets(args.subsets)))
    except AnalysisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
