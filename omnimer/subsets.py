"""The aux-task subsets of the ablation grid (DESIGN §5): their names, their order, and parsing.

One definition for the sweep (``sweeps/aux_ablation.py`` names its trials and ``--subsets`` with it)
and the analysis (``python -m analysis`` orders and names the table's rows with it), so that a cell
has one name everywhere. No heavy imports: the sweep module, which every Tune trial process imports,
loads this module.

The tasks and their order are :mod:`omnimer.aux_tasks`' table.
"""

from __future__ import annotations

from omnimer.aux_tasks import TASK_NAMES

TASKS = TASK_NAMES

Subset = tuple[bool, bool, bool]
# The 2³ lattice in the order of a paper's ablation table: by size, then text, face, prosody.
LATTICE: tuple[Subset, ...] = (
    (False, False, False),
    (True, False, False),
    (False, True, False),
    (False, False, True),
    (True, True, False),
    (True, False, True),
    (False, True, True),
    (True, True, True),
)
NO_AUX: Subset = LATTICE[0]
ALL_AUX: Subset = LATTICE[-1]


class SubsetError(ValueError):
    """A subset name that is none of ``none``, ``all`` or a ``+``-joined list of tasks."""


def subset_name(subset: Subset) -> str:
    """``none``, ``face``, ``text+prosody``, ``text+face+prosody``."""
    enabled = [task for task, on in zip(TASKS, subset, strict=True) if on]
    return "+".join(enabled) if enabled else "none"


def parse_subset(name: str) -> Subset:
    """Inverse of :func:`subset_name`; also accepts ``all``, any case and order, and ``aux_`` prefixes."""
    text = name.strip().lower()
    if text == "none":
        return NO_AUX
    if text == "all":
        return ALL_AUX
    parts = [p.strip().removeprefix("aux_") for p in text.split("+")]
    unknown = [p for p in parts if p not in TASKS]
    if unknown:
        raise SubsetError(
            f"subset {name!r} is not none, all or a '+'-joined list of {', '.join(TASKS)} "
            f"(unknown: {', '.join(repr(p) if not p else p for p in unknown)}), e.g. text+prosody"
        )
    return tuple(task in parts for task in TASKS)  # type: ignore[return-value]
