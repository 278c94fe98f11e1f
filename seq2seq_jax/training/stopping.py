"""Early stopping and reduce-on-plateau: what each validation result does to the rest of the run.

The tracker is a small JSON object saved in every checkpoint's `meta` item, so a run resumed from step N goes on
with the counters, best value and learning-rate scale it had at step N (a checkpoint from before these fields
existed gives the defaults of `initial`):

  best_step, best   the step and value of the best task metric so far (None before the first evaluation)
  bad_evals         evaluations since the best one: early stopping ends the run when it reaches train.patience
  plateau_evals     evaluations since the best one or the last reduction: reduce-on-plateau multiplies the
                    learning rate by train.plateau_factor when it reaches train.plateau_patience, then restarts
  lr_scale          the product of the reductions so far (1.0: none), passed to every train step

Only a strictly better value is an improvement; an equal one counts as an evaluation without improvement.
"""

IMPROVED, REDUCED, STOP = 1, 2, 4  # events of one evaluation, as bits (one int to broadcast to all processes)


def initial(best: tuple[int, float] | None = None) -> dict:
  """A fresh tracker; `best` = (step, value) when known from elsewhere (an old run's metrics.jsonl)."""
  return {'best_step': best[0] if best else None, 'best': best[1] if best else None, 'bad_evals': 0,
          'plateau_evals': 0, 'lr_scale': 1.0}


def restore(meta: dict | None, fallback_best=None) -> dict:
  """The tracker saved in a checkpoint's meta; a checkpoint without one gives `initial(fallback_best())`."""
  saved = (meta or {}).get('tracker')
  if not isinstance(saved, dict):
    return initial(fallback_best() if fallback_best is not None else None)
  return {**initial(), **saved}


def better(value: float, best: float | None, mode: str) -> bool:
  return best is None or (value < best if mode == 'min' else value > best)


def judge(tracker: dict, value: float, mode: str, t) -> int:
  """The events (IMPROVED | REDUCED | STOP bits) of a validation result `value` ('min' or 'max' is better)."""
  if better(value, tracker['best'], mode):
    return IMPROVED
  events = 0
  if t.plateau_patience and tracker['plateau_evals'] + 1 >= t.plateau_patience:
    events |= REDUCED
  if t.patience and tracker['bad_evals'] + 1 >= t.patience:
    events |= STOP
  return events


def advance(tracker: dict, events: int, step: int, value: float, t) -> dict:
  """The tracker after an evaluation at `step` with result `value` and `events` (from `judge`)."""
  if events & IMPROVED:
    return {**tracker, 'best_step': step, 'best': value, 'bad_evals': 0, 'plateau_evals': 0}
  out = {**tracker, 'bad_evals': tracker['bad_evals'] + 1, 'plateau_evals': tracker['plateau_evals'] + 1}
  if events & REDUCED:
    out.update(plateau_evals=0, lr_scale=tracker['lr_scale'] * t.plateau_factor)
  return out


def stopped(tracker: dict, t) -> bool:
  """Whether early stopping has ended the run (a run resumed from its last checkpoint does not go on; one with a
  larger train.patience does)."""
  return bool(t.patience) and tracker['bad_evals'] >= t.patience
