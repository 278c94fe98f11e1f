"""Training: train state, optimizer and schedules (steps.py), data parallelism over devices and processes
(parallel.py, distributed.py), the loop (train.py), stopping on SIGTERM / Ctrl-C (signals.py), progress and
metric writers.

May import: everything below it — `evaluation`, `decoding`, `runs`, `config`, `model`, `data`, `errors`.
"""
