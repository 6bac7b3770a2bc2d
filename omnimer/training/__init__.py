"""One training run of OmniMER: Ray Train workers fine-tune the Thinker's LoRA adapter with DeepSpeed.

    omnimer train --config sweeps/configs/smoke.yaml model.name_or_path=runs/demo/tiny-model \\
        data.path=runs/demo/shards run.output_dir=runs/train run.name=r0

Three layers (STYLE: Ray examples), one module each:

- :mod:`~omnimer.training.driver`: validates the config, builds the ``TorchTrainer``
  (:mod:`~omnimer.training.trainer`: Ray Train's, less what the cluster cannot serve), fits, writes
  ``record.json``;
- :mod:`~omnimer.training.worker`: the per-worker loop (set up; per epoch train, evaluate,
  checkpoint, report);
- the pieces the loop uses: :mod:`~omnimer.training.step` (the loss of one step),
  :mod:`~omnimer.training.evaluate` (closed-set scoring), :mod:`~omnimer.training.engine`
  (DeepSpeed), :mod:`~omnimer.training.checkpoint`, :mod:`~omnimer.training.outputs` (rank 0's
  TensorBoard events and best adapter), :mod:`~omnimer.training.dataset` (the rows each worker reads);
- :mod:`~omnimer.training.record`: the run's immutable result (``RunRecord``, ``Status``), which the
  sweep and the analysis read; it imports no torch.
"""
