"""`python -m seq2seq_jax ...` is the same as `seq2seq-jax ...`."""

import sys

from seq2seq_jax.cli import main

sys.exit(main())
