"""Analysis of training records: ablation tables, aux-task attribution, plots and a report.

    python -m analysis tables runs/sweeps/demo-ablation --format md|latex|csv [--out DIR]
    python -m analysis report runs/sweeps/demo-ablation --out runs/sweeps/demo-ablation/report

Reads only ``record.json`` files (and a search's ``optuna.db``), never training code. For a sweep's
closing summary: ``from analysis.report import ablation_summary``.
"""
