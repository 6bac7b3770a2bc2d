"""The auxiliary tasks (DESIGN §4): one table that everything about them derives from.

| name    | shard column | the model sees | answer                                 | its λ (``loss.``)    |
|---------|--------------|----------------|----------------------------------------|----------------------|
| text    | aux_keywords | the transcript | the emotion words, the text's sentiment | aux_weight_text     |
| face    | aux_face     | the frames     | the facial expression                  | aux_weight_face      |
| prosody | aux_prosody  | the audio      | pitch, variability, energy and tempo   | aux_weight_prosody   |

A task's name is its name everywhere: the ablation's subsets (:mod:`omnimer.subsets`), the loss parts
and TensorBoard tags (``loss/face``), the conversations (:mod:`omnimer.tasks`), the shard columns the
training run reads (:mod:`omnimer.training.dataset`) and the analysis. A task is on exactly when its
λ > 0 (:func:`enabled_tasks`): then its conversations are built and run; at λ = 0 they are not.

No heavy imports: the sweep and the analysis load this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuxTask:
    """One auxiliary task: its name, where its target is, what it shows the model, its question."""

    name: str
    column: str
    media: tuple[str, ...]
    # The task's question, per prompt language (``data.language``).
    prompts: dict[str, str]

    @property
    def weight_key(self) -> str:
        """Its λ's field in ``LossConfig`` (``loss.<weight_key>`` in a config)."""
        return f"aux_weight_{self.name}"


AUX_TASKS: tuple[AuxTask, ...] = (
    AuxTask(
        "text",
        "aux_keywords",
        ("text",),
        {
            "id": "Sebutkan kata-kata dalam transkrip yang mengungkapkan emosi, dan sentimen teksnya.",
            "en": "List the words of the transcript that express emotion, and the text's sentiment.",
        },
    ),
    AuxTask(
        "face",
        "aux_face",
        ("video",),
        {
            "id": "Deskripsikan ekspresi wajah pembicara dalam video ini.",
            "en": "Describe the speaker's facial expression in this video.",
        },
    ),
    AuxTask(
        "prosody",
        "aux_prosody",
        ("audio",),
        {
            "id": "Deskripsikan prosodi suara pembicara: tinggi nada, variasi, energi, dan tempo.",
            "en": "Describe the speaker's voice prosody: pitch level, variability, energy and tempo.",
        },
    ),
)
TASK_NAMES: tuple[str, ...] = tuple(task.name for task in AUX_TASKS)
BY_NAME: dict[str, AuxTask] = {task.name: task for task in AUX_TASKS}
TARGET_COLUMNS: tuple[str, ...] = tuple(task.column for task in AUX_TASKS)


def aux_weights(loss) -> dict[str, float]:
    """λ of every aux task, by name, from a ``LossConfig`` (or its dict)."""
    get = loss.get if isinstance(loss, dict) else lambda key: getattr(loss, key)
    return {task.name: float(get(task.weight_key)) for task in AUX_TASKS}


def enabled_tasks(loss) -> tuple[AuxTask, ...]:
    """The aux tasks that are on: λ > 0."""
    weights = aux_weights(loss)
    return tuple(task for task in AUX_TASKS if weights[task.name] > 0)
