"""Run directories: what a workdir holds (config, vocabularies, run info) and its orbax checkpoints.

May import: `config`, `data`, `model`, `errors`. Used by decoding (to load a model), training (to save and
resume) and the tools.
"""

from seq2seq_jax.runs.workdir import Run, open_run  # noqa: F401
