"""The Qwen2.5-Omni Thinker: a tiny random-init build for tests and demos, the loader, and LoRA.

- :mod:`omnimer.model.tiny` writes a tiny Thinker (or full Omni) checkpoint + processor in the Hugging
  Face format: ``omnimer tiny-model --out DIR [--full] [--seed S]``.
- :mod:`omnimer.model.load` loads a processor and a Thinker from such a directory or from
  ``Qwen/Qwen2.5-Omni-7B`` alike, and wraps the Thinker with a peft LoRA adapter.
- :mod:`omnimer.model.source` checks ``model.name_or_path`` (a directory or a Hub id) and
  :mod:`omnimer.model.staging` copies it to node-local disk once per node.

Import the module you need: this package imports none of them, so that checking a model path or
staging it (in processes that never load the model) does not import transformers and peft.
"""
