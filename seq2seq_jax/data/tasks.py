"""The generated tasks (no download), one registry entry each: name -> generate(split, d, seed) -> [(source,
target)], `d` being the config's data section. Held-out splits never contain a training source.

  copy, reverse, sort, addition   synthetic.py (letters and digits)
  greeting, dates                 copy_tasks.py (names and CLDR dates: copying from the source matters)
"""

import functools
from typing import Callable

from seq2seq_jax.data import copy_tasks, synthetic

GENERATED: dict[str, Callable[..., list[tuple[str, str]]]] = {
    **{task: functools.partial(synthetic.generate, task) for task in synthetic.TASKS},
    **{task: functools.partial(copy_tasks.generate, task) for task in copy_tasks.TASKS},
}
