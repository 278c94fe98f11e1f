"""Tools around finished runs and the machine: `info`, `average`, `decode-speed` (experiments.py) and the
benchmark (bench.py).

May import: every layer below the CLI (`training`, `evaluation`, `decoding`, `runs`, `config`, `model`,
`data`, `errors`).
"""
