"""One experiment, analysed end to end: tables, plots, the Markdown report and the short summary.

    python -m analysis report runs/sweeps/demo-ablation --out runs/sweeps/demo-ablation/report
    python -m analysis summary runs/sweeps/demo-ablation

From Python (e.g. at the end of a sweep)::

    from analysis.report import ablation_summary
    print(ablation_summary(["runs/sweeps/demo-ablation"], target="emotion"))

Everything here raises :class:`analysis.records.AnalysisError` for bad input; the CLI turns that into
exit code 2 and the message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import attribution as attribution_module
from analysis import clip_inference, mixing, records, search, tables
from analysis.attribution import Attribution
from analysis.clip_inference import ClipInference
from analysis.records import AnalysisError, parse_subset
from omnimer import storage
from omnimer.provenance import short_version
from omnimer.subsets import Subset, subset_name
from omnimer.sweep.invocations import INVOCATIONS_FILE
from omnimer.training.record import Status

log = logging.getLogger(__name__)

EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv"}
PLOT_FILES = {
    "shapley": "shapley.png",
    "per_class_f1": "per_class_f1.png",
    "confusion": "confusion_matrices.png",
    "learning_curves": "learning_curves.png",
    "parallel_coordinates": "optuna_parallel_coordinates.png",
    "importance": "optuna_param_importance.png",
}
ATTRIBUTION_GUIDE = (
    "Main effect: mean over the subsets with the task − mean over those without. Shapley value: the "
    "task's average marginal gain over all orders of adding the tasks (the three sum to "
    "v(all) − v(none)). Interaction a×b: v(ab) − v(a) − v(b) + v(∅), averaged over the third task. "
    "p: paired sign-flip test over the seed-paired differences v(S ∪ task) − v(S)."
)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path``, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("wrote %s", path)
    return path


@dataclass(frozen=True)
class Experiment:
    """Everything the tables, plots and report of one or more experiment dirs are built from."""

    exp_dirs: list[records.Location]
    target: str
    split: str
    trials: list[records.Trial]
    frame: pd.DataFrame
    ablation: pd.DataFrame
    attribution: Attribution
    study: object | None
    # The clip-level family of the ablation (analysis.clip_inference), or why it is unavailable.
    clips: ClipInference | str = "not computed"

    @property
    def name(self) -> str:
        return ", ".join(storage.basename(d) for d in self.exp_dirs)

    @property
    def has_ablation(self) -> bool:
        return not tables.ablation_rows(self.frame, self.split).empty

    @property
    def has_search(self) -> bool:
        return self.study is not None or bool((self.frame["mode"] == "search").any())


def analyse(
    exp_dirs: Sequence[str | Path],
    target: str | None = None,
    split: str = "test",
    n_boot: int = attribution_module.DEFAULT_BOOTSTRAP,
    seed: int = 0,
    ci_method: str = "residuals",
    warn: bool = True,
    allow_mixed: bool = False,
) -> Experiment:
    """Load and validate the records (one target), build the ablation table and the attribution.

    With ``warn``, subsets without a finished trial are logged (a caller printing
    :func:`missing_messages` itself passes False).
    """
    if not exp_dirs:
        raise AnalysisError("no experiment dir given; pass <storage-path>/<name> of a sweep")
    if split not in records.SPLITS:
        raise AnalysisError(f"split {split!r} is not one of {', '.join(records.SPLITS)}")
    dirs = [records.as_location(d) for d in exp_dirs]
    trials, target = records.select_target(records.load_trials(dirs), target)
    mixed = mixing.check_mixable(trials, allow_mixed)
    frame = records.tidy_table(trials)
    ablation = tables.ablation_frame(frame, split)
    attribution = attribution_module.attribute(
        frame, "macro_f1", split, n_boot=n_boot, seed=seed, ci_method=ci_method
    )
    study = records.load_first_study(dirs)
    clips = clip_inference.infer(trials, split, seed=seed) if not ablation.empty else "no ablation trial"
    if isinstance(clips, ClipInference):
        ablation = clip_inference.with_clip_inference(ablation, clips)
    if mixed:
        ablation.attrs["mixed"] = mixed
        log.warning("%s", mixed)
    experiment = Experiment(dirs, target, split, trials, frame, ablation, attribution, study, clips)
    for message in missing_messages(experiment) if warn else []:
        log.warning("%s", message)
    return experiment


def missing_messages(experiment: Experiment) -> list[str]:
    """What the lattice lacks: one line naming the subsets without a finished trial, then one per such
    subset that has failed records (the first one's path and error), so the user knows what to fix."""
    if not experiment.has_ablation:
        return []
    missing = tables.missing_subsets(experiment.ablation)
    if not missing:
        return []
    messages = [
        f"no finished trial for subset(s) {', '.join(missing)} in {experiment.name}: their rows are empty "
        "and the attribution is unavailable until every subset has one (re-running the sweep resumes it; a "
        "sweep run with --subsets: run the others under another --name and pass both experiment dirs)"
    ]
    rows = tables.ablation_rows(experiment.frame, experiment.split)
    for name in missing:
        failed = rows[(rows["subset"] == name) & (rows["status"] == Status.FAILED)]
        if not failed.empty:
            first = failed.iloc[0]
            messages.append(
                f"subset {name}: {len(failed)} failed trial(s), e.g. {first['record_path']}: {first['error']}"
            )
    return messages


def chosen_subsets(experiment: Experiment, names: Sequence[str] | None) -> list[Subset]:
    if names:
        return [parse_subset(n) for n in names]
    return tables.default_subsets(experiment.ablation)


# ------------------------------------------------------------------------------------ tables


def build_tables(
    experiment: Experiment, fmt: str = "md", subsets: Sequence[str] | None = None, top_k: int = 10
) -> dict[str, str]:
    """Rendered tables by name (ablation, attribution, per_class_f1, search_summary) and, for a search,
    ``best_config.yaml``; a table whose trials are absent is left out."""
    out: dict[str, str] = {}
    if experiment.has_ablation:
        out["ablation"] = tables.format_ablation(
            experiment.ablation, fmt, experiment.target, experiment.split
        )
        out["attribution"] = tables.format_attribution(experiment.attribution, fmt)
        per_class = tables.per_class_frame(
            experiment.frame, chosen_subsets(experiment, subsets), experiment.split
        )
        out["per_class_f1"] = tables.format_per_class(per_class, fmt, experiment.split)
    if experiment.has_search:
        summary = search.search_frame(experiment.frame, experiment.study, top_k)
        out["search_summary"] = search.format_search(
            summary, fmt, search.search_status_line(experiment.frame)
        )
        best = search.best_config_yaml(experiment.frame, experiment.study, experiment.name)
        if best:
            out["best_config.yaml"] = best
    return out


def best_config_of(exp_dir: str | Path) -> dict:
    """The best search trial's hyperparameters in an experiment dir, as nested config sections (what
    ``best_config.yaml`` holds; empty if the dir has no finished search trial)."""
    experiment = analyse([exp_dir], warn=False)
    return search.best_config(experiment.frame, experiment.study)


def write_tables(tables_by_name: dict[str, str], out: Path, fmt: str) -> list[Path]:
    written = []
    for name, text in tables_by_name.items():
        filename = name if name.endswith(".yaml") else f"{name}.{EXTENSIONS[fmt]}"
        written.append(write_text_atomic(out / filename, text))
    return written


def ablation_summary(
    exp_dirs: Sequence[str | Path], target: str | None = None, split: str = "test", allow_mixed: bool = False
) -> str:
    """The ablation table (Markdown) and the Shapley lines, for a terminal at the end of a sweep.

    Raises :class:`AnalysisError` on bad input (no records, unknown schema, mixed targets).
    """
    # warn=False: the notes below say it instead
    experiment = analyse(exp_dirs, target, split, warn=False, allow_mixed=allow_mixed)
    counts = records.status_counts(experiment.trials)
    status = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines = [
        f"Aux-task ablation of {experiment.name} ({experiment.target}, {split} split; trials: {status})",
        "",
    ]
    if not experiment.has_ablation:
        return (
            "\n".join(lines) + "\nNo ablation trial (only search trials): see `python -m analysis tables`.\n"
        )
    lines.append(tables.format_ablation(experiment.ablation, "md", experiment.target, split))
    lines += [f"Note: {m}" for m in missing_messages(experiment)]
    lines.append(tables.shapley_lines(experiment.attribution))
    lines += conclusion_lines(experiment)
    return "\n".join(lines) + "\n"


def conclusion_lines(experiment: Experiment) -> list[str]:
    """What the table can and cannot conclude, in words (the clip-level family)."""
    clips = experiment.clips
    if not isinstance(clips, ClipInference):
        return [f"Clip-level inference (intervals over the test set and the seeds) unavailable: {clips}."]
    lines = [clip_inference.clustered_shapley_lines(clips), *clips.resolution_lines()]
    resolved = [c for c in clips.contrasts if c.resolved]
    if resolved:
        names = ", ".join(f"{c.name} ({c.estimate:+.3f})" for c in resolved)
        lines.append(f"Resolved after Holm's adjustment over the ten contrasts: {names}.")
    else:
        lines.append(
            "No subset differs from no-aux, and no task's Shapley value differs from 0, by more than this "
            "test set and these seeds can tell apart (Holm-adjusted over the ten contrasts): the table's "
            "differences may be noise."
        )
    return lines


# ------------------------------------------------------------------------------------ plots


def write_plots(experiment: Experiment, out: Path, subsets: Sequence[str] | None = None) -> dict[str, Path]:
    """Every figure whose input exists, as PNGs under ``out``; returns them by name."""
    from analysis import plots  # matplotlib is imported only when figures are drawn

    written: dict[str, Path | None] = {}
    if experiment.has_ablation:
        chosen = chosen_subsets(experiment, subsets)
        per_class = tables.per_class_frame(experiment.frame, chosen, experiment.split)
        written["shapley"] = plots.plot_shapley(experiment.attribution, out / PLOT_FILES["shapley"])
        written["per_class_f1"] = plots.plot_per_class(
            per_class, out / PLOT_FILES["per_class_f1"], experiment.split
        )
        written["confusion"] = plots.plot_confusion(
            experiment.frame, chosen, out / PLOT_FILES["confusion"], experiment.split
        )
    written["learning_curves"] = plots.plot_learning_curves(
        experiment.frame, out / PLOT_FILES["learning_curves"]
    )
    if experiment.study is not None:
        written["parallel_coordinates"] = plots.plot_parallel_coordinates(
            experiment.study, out / PLOT_FILES["parallel_coordinates"]
        )
        written["importance"] = plots.plot_importances(experiment.study, out / PLOT_FILES["importance"])
    return {name: path for name, path in written.items() if path is not None}


# ------------------------------------------------------------------------------------ the report


def _provenance(experiment: Experiment) -> list[str]:
    counts = records.status_counts(experiment.trials)
    versions = sorted({short_version(t.record) for t in experiment.trials})
    dirty = sum(bool((t.record.get("git") or {}).get("dirty")) for t in experiment.trials)
    label_sets = sorted({t.label_set for t in experiment.trials})
    return [
        f"- experiment dir(s): {', '.join(f'`{d}`' for d in experiment.exp_dirs)}",
        f"- target: **{experiment.target}** (label set {', '.join(label_sets)}); tables on the "
        f"**{experiment.split}** split; metrics of each trial's best-valid epoch",
        f"- trials: {len(experiment.trials)} ("
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + "; stopped = early-stopped by ASHA)",
        f"- code: {', '.join(versions)}"
        + (f" ({dirty} of the trials ran from a work tree with uncommitted changes)" if dirty else ""),
    ]


def read_invocations(exp_dir: records.Location) -> list[dict]:
    """The sweep invocations of an experiment dir (``invocations.json``; none for a lone run)."""
    path = storage.join(exp_dir, INVOCATIONS_FILE)
    if not storage.is_file(path):
        return []
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise AnalysisError(f"{path}: not valid JSON ({error})") from None


def invocation_lines(experiment: Experiment) -> list[str]:
    """Which invocation of the sweep ran which trials, with each invocation's code and host.

    A trial belongs to the invocation that wrote its record last (a trial cut off by a killed driver
    belongs to the invocation that resumed and finished it).
    """
    lines: list[str] = []
    for exp_dir in experiment.exp_dirs:
        invocations = read_invocations(exp_dir)
        if not invocations:
            continue
        ran: dict[object, list[str]] = {}
        for trial in experiment.trials:
            if trial.exp_dir == exp_dir:
                ran.setdefault((trial.record.get("sweep") or {}).get("invocation"), []).append(trial.run_name)
        lines += [
            f"Invocations of `{storage.basename(exp_dir)}` (`{INVOCATIONS_FILE}`):",
            "",
            "| # | started (UTC) | host | code | slots | resumed | wall | trials it ran |",
            "|--:|:--|:--|:--|--:|:-:|--:|:--|",
        ]
        for entry in invocations:
            started = dt.datetime.fromtimestamp(entry["started"], dt.UTC).strftime("%Y-%m-%d %H:%M")
            wall = entry.get("wall_seconds")
            names = sorted(ran.get(entry["invocation"], []))
            lines.append(
                f"| {entry['invocation']} | {started} | {entry.get('host', '?')} | {short_version(entry)} "
                f"| {entry.get('slots', '?')} | {'yes' if entry.get('resumed') else 'no'} "
                f"| {'did not end (driver lost)' if wall is None else f'{wall:.0f} s'} "
                f"| {len(names)}: {', '.join(f'`{n}`' for n in names) if names else '—'} |"
            )
        if ran.get(None):
            lines.append(f"\n{len(ran[None])} trial(s) were recorded before invocations were numbered.")
        lines.append("")
    return lines


def _image(plots_by_name: dict[str, Path], name: str, alt: str, out: Path) -> list[str]:
    path = plots_by_name.get(name)
    return [f"![{alt}]({os.path.relpath(path, out)})", ""] if path is not None else []


def _failed_section(experiment: Experiment) -> list[str]:
    failed = [t for t in experiment.trials if t.status == Status.FAILED]
    if not failed:
        return []
    lines = ["## Failed trials", "", "Counted in the tables' `failed` column, never in a mean.", ""]
    for trial in failed:
        error = str(trial.record.get("error") or "no error recorded").splitlines()[0]
        lines.append(
            f"- `{trial.run_name}` ({subset_name(trial.subset)}, seed {trial.seed}): {error} — `{trial.path}`"
        )
    return [*lines, ""]


def _importance_lines(experiment: Experiment) -> list[str]:
    from analysis import plots

    importances = plots.parameter_importances(experiment.study)
    if not importances:
        return []
    lines = ["| parameter | importance (PED-ANOVA) |", "|:--|--:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in importances.items()]
    return [*lines, ""]


def report_markdown(
    experiment: Experiment,
    rendered: dict[str, str],
    plots_by_name: dict[str, Path],
    out: Path,
) -> str:
    """The report's Markdown: provenance, tables, figures (linked relative to ``out``), failures."""
    lines = [f"# Experiment report: {experiment.name}", "", *_provenance(experiment), ""]
    if experiment.has_ablation:
        lines += ["## Aux-task ablation", "", rendered["ablation"].rstrip()]
        lines += [f"> {m}" for m in missing_messages(experiment)]
        lines += ["", "## What this table can and cannot conclude", ""]
        lines += [line if line.startswith("  ") else f"{line}\n" for line in conclusion_lines(experiment)]
        lines += ["", "## Attribution to each auxiliary task", "", rendered["attribution"]]
        if experiment.attribution.available:
            lines += [ATTRIBUTION_GUIDE, ""]
        lines += _image(plots_by_name, "shapley", "Shapley values with bootstrap CIs", out)
        lines += ["## Per-class F1", "", rendered["per_class_f1"]]
        lines += _image(plots_by_name, "per_class_f1", "per-class F1", out)
        lines += _image(plots_by_name, "confusion", "confusion matrices", out)
    if experiment.has_search:
        lines += ["## Hyperparameter search", "", rendered["search_summary"]]
        if "best_config.yaml" in rendered:
            lines += [
                "Best configuration (also in `best_config.yaml`):",
                "",
                "```yaml",
                rendered["best_config.yaml"].rstrip(),
                "```",
                "",
            ]
        if experiment.study is not None:
            lines += _importance_lines(experiment)
            lines += _image(plots_by_name, "importance", "parameter importance", out)
            lines += _image(plots_by_name, "parallel_coordinates", "parallel coordinates", out)
    lines += ["## Learning curves", ""]
    curves = _image(plots_by_name, "learning_curves", "valid macro-F1 per epoch", out)
    lines += curves or ["No trial has an epoch history yet.", ""]
    lines += _failed_section(experiment)
    invocations = invocation_lines(experiment)
    if invocations:
        lines += ["## Invocations", "", *invocations]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    experiment: Experiment, out: Path, top_k: int = 10, subsets: Sequence[str] | None = None
) -> Path:
    """``out/report.md`` with the tables, linking the PNGs written beside it (and best_config.yaml)."""
    plots_by_name = write_plots(experiment, out, subsets)
    rendered = build_tables(experiment, "md", subsets, top_k)
    if "best_config.yaml" in rendered:
        write_text_atomic(out / "best_config.yaml", rendered["best_config.yaml"])
    return write_text_atomic(out / "report.md", report_markdown(experiment, rendered, plots_by_name, out))
