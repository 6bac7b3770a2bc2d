"""Tables from the tidy records table: ablation, attribution, per-class F1 (the search summary and the
best configuration: :mod:`analysis.search`).

    python -m analysis tables runs/sweeps/demo-ablation --target emotion --format latex --out tables/

Each table is first a plain pandas DataFrame of numbers (what the CSV holds, so it round-trips with
``pandas.read_csv``), then rendered as Markdown or LaTeX (booktabs, best cell bold, special
characters escaped). Means are over the finished trials of a cell; failed, early-stopped and running
trials are counted in their own columns and never enter a mean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import stats
from analysis.attribution import Attribution
from analysis.records import SPLITS, AnalysisError, parse_subset
from omnimer.subsets import ALL_AUX, LATTICE, NO_AUX, TASKS, Subset, subset_name
from omnimer.training.record import Status

log = logging.getLogger(__name__)

FORMATS = ("md", "latex", "csv")
DIGITS = 3
TABLE_METRICS = {"macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "accuracy": "accuracy"}


# ------------------------------------------------------------------------------------ cell formatting


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (underscores of config keys, % of names, …)."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in str(text))


class Cells:
    """Formats table cells for one output format (``md`` or ``latex``)."""

    def __init__(self, fmt: str, digits: int = DIGITS) -> None:
        if fmt not in ("md", "latex"):
            raise ValueError(f"cells are formatted for md or latex, got {fmt!r}")
        self.fmt = fmt
        self.digits = digits
        self.missing = "—" if fmt == "md" else "--"

    def text(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing
        text = str(value)
        return latex_escape(text) if self.fmt == "latex" else text.replace("|", r"\|")

    def flag(self, on: bool) -> str:
        if self.fmt == "latex":
            return r"\checkmark" if on else r"$\times$"
        return "✓" if on else "✗"

    def bold(self, text: str) -> str:
        return rf"\textbf{{{text}}}" if self.fmt == "latex" else f"**{text}**"

    def number(self, value: float, signed: bool = False) -> str:
        if value is None or not np.isfinite(value):
            return self.missing
        text = f"{value:+.{self.digits}f}" if signed else f"{value:.{self.digits}f}"
        # A text-mode hyphen is too short for a minus sign in a paper.
        return f"${text}$" if self.fmt == "latex" and signed else text

    def integer(self, value: float) -> str:
        return self.missing if value is None or not np.isfinite(value) else f"{int(round(value)):,}"

    def general(self, value: Any) -> str:
        """A hyperparameter value: 3 significant digits for floats, others as they are."""
        if isinstance(value, bool) or value is None:
            return self.text(value)
        if isinstance(value, float | np.floating):
            return self.missing if not np.isfinite(value) else self.text(f"{value:.3g}")
        return self.text(value)

    def mean_std(self, mean: float, std: float, bold: bool = False) -> str:
        if not np.isfinite(mean):
            return self.missing
        plus_minus = r" $\pm$ " if self.fmt == "latex" else " ± "
        text = f"{mean:.{self.digits}f}"
        if np.isfinite(std):
            text += f"{plus_minus}{std:.{self.digits}f}"
        return self.bold(text) if bold else text


def render(
    headers: list[str], rows: list[list[str]], align: str, fmt: str, caption: str = "", label: str = ""
) -> str:
    """A Markdown pipe table (caption as a line below), or a LaTeX ``table`` with a booktabs
    ``tabular``; cells come formatted for the target format (see :class:`Cells`)."""
    if len(align) != len(headers) or any(len(row) != len(headers) for row in rows):
        raise ValueError("every row needs one cell per header, and align one letter per column")
    if fmt == "md":
        rule = {"l": ":--", "c": ":-:", "r": "--:"}
        lines = [f"| {' | '.join(headers)} |", f"|{'|'.join(rule[a] for a in align)}|"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
        if caption:
            lines += ["", caption]
        return "\n".join(lines) + "\n"
    lines = [
        r"% needs \usepackage{booktabs} and \usepackage{amssymb} (\checkmark)",
        r"\begin{table}[t]",
        r"\centering",
    ]
    if caption:
        lines.append(rf"\caption{{{caption}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise AnalysisError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


# ------------------------------------------------------------------------------------ ablation


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise AnalysisError(f"split {split!r} is not one of {', '.join(SPLITS)}")


def ablation_rows(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of ``split`` that belong in an ablation table (searches vary everything: left out)."""
    _check_split(split)
    if frame.empty:
        return frame
    return frame[(frame["split"] == split) & (frame["mode"] != "search")]


def ablation_frame(frame: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per subset of the lattice, in a fixed order, numbers only (the CSV form).

    Columns: ``subset``, ``text``, ``face``, ``prosody`` (bool), ``n`` (finished trials), ``failed``,
    ``stopped``, ``running``, ``<metric>_mean`` / ``<metric>_std`` (ddof = 1) for macro-F1,
    weighted-F1 and accuracy, ``delta_macro_f1_vs_none`` / ``_vs_all`` (difference of means), and
    ``device_seconds`` (summed over every trial of the cell, failed ones too: they cost as much).
    A subset without a finished trial keeps its row, with n = 0 and NaN means.
    """
    rows = ablation_rows(frame, split)
    table = []
    for subset in LATTICE:
        cell = rows[rows["subset"] == subset_name(subset)] if not rows.empty else rows
        finished = cell[cell["status"] == Status.FINISHED] if not cell.empty else cell
        entry: dict[str, Any] = {"subset": subset_name(subset), **dict(zip(TASKS, subset, strict=True))}
        entry["n"] = int(len(finished))
        for status in (Status.FAILED, Status.STOPPED, Status.RUNNING):
            entry[str(status)] = int((cell["status"] == status).sum()) if not cell.empty else 0
        for metric in TABLE_METRICS:
            values = finished[metric].to_numpy(dtype=float) if not finished.empty else []
            mean, std, _ = stats.mean_std(values)
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean, std
        seconds = cell["device_seconds"].to_numpy(dtype=float) if not cell.empty else np.array([])
        seconds = seconds[np.isfinite(seconds)]
        entry["device_seconds"] = float(seconds.sum()) if seconds.size else math.nan
        table.append(entry)
    result = pd.DataFrame(table)
    means = result.set_index("subset")["macro_f1_mean"]
    result["delta_macro_f1_vs_none"] = result["macro_f1_mean"] - means[subset_name(NO_AUX)]
    result["delta_macro_f1_vs_all"] = result["macro_f1_mean"] - means[subset_name(ALL_AUX)]
    order = ["subset", *TASKS, "n", "failed", "stopped", "running"]
    order += [f"{m}_{s}" for m in TABLE_METRICS for s in ("mean", "std")]
    order += ["delta_macro_f1_vs_none", "delta_macro_f1_vs_all", "device_seconds"]
    return result[order]


# The clip-level columns of a subset's row (analysis.clip_inference): its difference from no-aux with
# the interval over the test set's videos and the seeds, Holm's p over the family, resolved or not,
# and the minimum detectable effect.
CLIP_COLUMNS = ("vs_none_low", "vs_none_high", "holm_p", "resolved", "mde")


def missing_subsets(ablation: pd.DataFrame) -> list[str]:
    """Subsets of the lattice with no finished trial."""
    return list(ablation.loc[ablation["n"] == 0, "subset"])


def best_mask(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype=float)
    if not np.isfinite(array).any():
        return np.zeros(len(array), dtype=bool)
    best = np.nanmax(array)
    return np.isfinite(array) & np.isclose(array, best, rtol=0, atol=1e-12)


def format_ablation(ablation: pd.DataFrame, fmt: str, target: str = "", split: str = "test") -> str:
    """The ablation table as Markdown, LaTeX or CSV (best mean of each metric in bold)."""
    check_format(fmt)
    if fmt == "csv":
        return to_csv(_with_majority_row(ablation))
    cells = Cells(fmt)
    latex = fmt == "latex"
    clip_level = "holm_p" in ablation.columns
    extra = [s for s in ("stopped", "running") if ablation[s].sum() > 0]
    headers = [t.capitalize() if latex else t for t in TASKS] + ["$n$" if latex else "n", "failed", *extra]
    headers += list(TABLE_METRICS.values())
    delta = r"$\Delta$" if latex else "Δ"
    headers += [f"{delta} macro-F1 vs none", f"{delta} macro-F1 vs all", "device-s"]
    if clip_level:
        headers += ["95% interval vs none", "Holm p", "resolved", "MDE"]
    best = {metric: best_mask(ablation[f"{metric}_mean"]) for metric in TABLE_METRICS}
    rows = []
    for i, row in enumerate(ablation.itertuples(index=False)):
        values = row._asdict()
        line = [cells.flag(values[t]) for t in TASKS]
        line += [str(values["n"]), str(values["failed"]), *(str(values[s]) for s in extra)]
        line += [
            cells.mean_std(values[f"{m}_mean"], values[f"{m}_std"], bold=bool(best[m][i]))
            for m in TABLE_METRICS
        ]
        line += [
            cells.number(values["delta_macro_f1_vs_none"], signed=True),
            cells.number(values["delta_macro_f1_vs_all"], signed=True),
            cells.integer(values["device_seconds"]),
        ]
        if clip_level:
            line += _clip_cells(cells, values)
        rows.append(line)
    if clip_level:
        label, f1 = ablation.attrs["majority"]
        rows.append(
            [cells.text(f"majority class ({label})"), "", ""]
            + ["", "", *("" for _ in extra)]
            + [cells.number(f1), "", ""]
            + ["", "", ""]
            + ["", "", "", ""]
        )
    align = "c" * len(TASKS) + "r" * (len(headers) - len(TASKS))
    what = f"{target}, " if target else ""
    pm = r"$\pm$" if latex else "±"
    caption = (
        f"Auxiliary-task ablation ({what}{split} split): mean {pm} std over seeds of the n finished "
        "trials per subset; failed trials are counted apart and excluded."
    )
    if clip_level:
        caption += (
            f" Clip level ({ablation.attrs['clips']}): the 95% interval of each subset's difference from "
            "no-aux covers the test set's sampling (its source videos resampled) and the seeds' (paired); "
            "Holm p is adjusted over the seven subsets and the three Shapley values; resolved = Holm p "
            "< 0.05; MDE = the smallest difference found with 80% power at α = 0.05. The majority row "
            "predicts the most frequent class for every clip."
        )
    if "mixed" in ablation.attrs:
        caption = ablation.attrs["mixed"] + ". " + caption
    return render(headers, rows, align, fmt, caption=caption, label="tab:aux-ablation")


def _clip_cells(cells: Cells, values: dict) -> list[str]:
    if values["holm_p"] is None or not np.isfinite(values["holm_p"]):
        return ["", "", "", ""]
    low, high = (cells.number(values[k], signed=True) for k in ("vs_none_low", "vs_none_high"))
    interval = f"[{low}, {high}]"
    p = values["holm_p"]
    return [
        interval,
        "<0.001" if p < 0.001 else f"{p:.3f}",
        "yes" if values["resolved"] else "no",
        cells.number(values["mde"]),
    ]


def _with_majority_row(ablation: pd.DataFrame) -> pd.DataFrame:
    if "majority" not in ablation.attrs:
        return ablation
    label, f1 = ablation.attrs["majority"]
    row = {column: math.nan for column in ablation.columns}
    row.update(subset=f"majority:{label}", macro_f1_mean=f1)
    return pd.concat([ablation, pd.DataFrame([row])], ignore_index=True)


# ------------------------------------------------------------------------------------ attribution


def attribution_frame(attribution: Attribution) -> pd.DataFrame:
    """kind (main_effect | interaction | shapley), name, estimate, ci_low, ci_high, p_value."""
    rows = []
    for kind, effects in (
        ("main_effect", attribution.main_effects),
        ("interaction", attribution.interactions),
        ("shapley", attribution.shapley),
    ):
        for effect in effects:
            rows.append(
                {
                    "kind": kind,
                    "name": effect.name,
                    "estimate": effect.estimate,
                    "ci_low": effect.ci_low,
                    "ci_high": effect.ci_high,
                    "p_value": effect.p_value,
                }
            )
    return pd.DataFrame(rows, columns=["kind", "name", "estimate", "ci_low", "ci_high", "p_value"])


def _with_interval(cells: Cells, estimate: float, low: float, high: float) -> str:
    text = cells.number(estimate, signed=True)
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{cells.number(low, signed=True)}, {cells.number(high, signed=True)}]"
    return text


def _p_value(cells: Cells, p: float) -> str:
    return cells.missing if not np.isfinite(p) else f"{p:.3g}"


def format_attribution(attribution: Attribution, fmt: str) -> str:
    """Per task: main effect, Shapley value (with intervals) and sign-flip p; then the interactions."""
    check_format(fmt)
    if fmt == "csv":
        return to_csv(attribution_frame(attribution))
    cells = Cells(fmt)
    if not attribution.available:
        return cells.text(f"Attribution {attribution.note}.") + "\n"
    level = f"{attribution.level:.0%}".replace("%", r"\%" if fmt == "latex" else "%")
    metric = cells.text(attribution.metric)
    headers = ["task", f"main effect [{level} CI]", f"Shapley [{level} CI]", "sign-flip p"]
    rows = [
        [
            cells.text(main.name),
            _with_interval(cells, main.estimate, main.ci_low, main.ci_high),
            _with_interval(cells, shap.estimate, shap.ci_low, shap.ci_high),
            _p_value(cells, main.p_value),
        ]
        for main, shap in zip(attribution.main_effects, attribution.shapley, strict=True)
    ]
    rows += [
        [
            cells.text(f"{e.name} (interaction)"),
            _with_interval(cells, e.estimate, e.ci_low, e.ci_high),
            "",
            "",
        ]
        for e in attribution.interactions
    ]
    caption = (
        f"Attribution of {attribution.split} {metric} to the aux tasks over the 2^3 lattice; Shapley values "
        f"sum to v(all) - v(none) = {cells.number(attribution.total, signed=True)}; intervals: "
        f"{attribution.interval_text}."
    )
    caption = (
        caption.replace("2^3", "$2^3$").replace("%", r"\%")
        if fmt == "latex"
        else caption.replace("2^3", "2³")
    )
    return render(headers, rows, "lrrr", fmt, caption=caption, label="tab:aux-attribution")


def shapley_lines(attribution: Attribution) -> str:
    """Plain lines for a terminal: one per task (Shapley, main effect, p), then the interactions."""
    if not attribution.available:
        return f"Shapley attribution {attribution.note}.\n"
    cells = Cells("md")
    lines = [
        f"Shapley attribution of {attribution.split} {attribution.metric} "
        f"(v(all) - v(none) = {attribution.total:+.{DIGITS}f}; intervals: {attribution.interval_text}):"
    ]
    for main, shap in zip(attribution.main_effects, attribution.shapley, strict=True):
        lines.append(
            f"  {shap.name:<8} Shapley {_with_interval(cells, shap.estimate, shap.ci_low, shap.ci_high)}"
            f"   main effect {_with_interval(cells, main.estimate, main.ci_low, main.ci_high)}"
            f"   sign-flip p = {_p_value(cells, main.p_value)}"
        )
    for effect in attribution.interactions:
        interval = _with_interval(cells, effect.estimate, effect.ci_low, effect.ci_high)
        lines.append(f"  {effect.name:<16} interaction {interval}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ per-class F1


def default_subsets(ablation: pd.DataFrame) -> list[Subset]:
    """no-aux, the best subset by mean macro-F1, and all-aux: those with a finished trial."""
    present = ablation[ablation["n"] > 0]
    chosen: list[Subset] = []
    candidates = [NO_AUX]
    if not present.empty:
        best = present.loc[present["macro_f1_mean"].idxmax(), "subset"]
        candidates.append(parse_subset(str(best)))
    candidates.append(ALL_AUX)
    for subset in candidates:
        if subset not in chosen and subset_name(subset) in set(present["subset"]):
            chosen.append(subset)
    return chosen


def per_class_frame(frame: pd.DataFrame, subsets: Sequence[Subset], split: str = "test") -> pd.DataFrame:
    """One row per class: ``label``, ``support``, then ``<subset>_mean``/``_std``/``_n`` per subset.

    Classes keep the label set's order; the support (true count on ``split``) makes the long tail
    visible. Subsets without a finished trial are left out (logged).
    """
    rows = ablation_rows(frame, split)
    rows = rows[rows["status"] == Status.FINISHED] if not rows.empty else rows
    if rows.empty:
        return pd.DataFrame(columns=["label", "support"])
    first = rows.iloc[0]
    labels = list(first["labels"]) or list(first["per_class_f1"])
    table = pd.DataFrame({"label": labels, "support": [first["per_class_support"].get(lb) for lb in labels]})
    for subset in subsets:
        name = subset_name(subset)
        cell = rows[rows["subset"] == name]
        if cell.empty:
            log.warning("per-class F1: subset %s has no finished trial on %s; left out", name, split)
            continue
        summaries = [stats.mean_std([pc.get(lb, math.nan) for pc in cell["per_class_f1"]]) for lb in labels]
        table[f"{name}_mean"] = [s[0] for s in summaries]
        table[f"{name}_std"] = [s[1] for s in summaries]
        table[f"{name}_n"] = [s[2] for s in summaries]
    return table


def format_per_class(per_class: pd.DataFrame, fmt: str, split: str = "test") -> str:
    """Per-class F1 (mean ± std over seeds) per chosen subset; the best subset per class in bold."""
    check_format(fmt)
    if fmt == "csv":
        return to_csv(per_class)
    cells = Cells(fmt)
    names = [c.removesuffix("_mean") for c in per_class.columns if c.endswith("_mean")]
    if not names:
        return cells.text("No finished trial: no per-class F1.") + "\n"
    n_text = ", ".join(f"{name}: n={int(per_class[f'{name}_n'].max())}" for name in names)
    headers = ["class", "support", *(cells.text(name) for name in names)]
    rows = []
    for _, row in per_class.iterrows():
        means = pd.Series([row[f"{name}_mean"] for name in names])
        best = best_mask(means) if len(names) > 1 else np.zeros(1, dtype=bool)
        line = [cells.text(row["label"]), cells.integer(_float(row["support"]))]
        line += [
            cells.mean_std(row[f"{name}_mean"], row[f"{name}_std"], bold=bool(best[i]))
            for i, name in enumerate(names)
        ]
        rows.append(line)
    pm = r"$\pm$" if fmt == "latex" else "±"
    caption = cells.text(f"Per-class F1 on {split} (mean ") + pm + cells.text(f" std over seeds; {n_text}).")
    return render(headers, rows, "lr" + "r" * len(names), fmt, caption=caption, label="tab:per-class-f1")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
