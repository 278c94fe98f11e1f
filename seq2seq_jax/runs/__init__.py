"""Run directories: what a workdir holds (config, vocabularies, run info), its orbax checkpoints with their
checksums (checkpoint.py, integrity.py) and the lock of the run that trains it (lock.py).

May import: `config`, `data`, `model`, `errors`. Used by decoding (to load a model), training (to save and
resume) and the tools.
"""

from seq2seq_jax.runs.workdir import Run, open_run  # noqa: F401
