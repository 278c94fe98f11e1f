"""Experiment configuration: defaults, config files and command-line overrides.

A config file is a Python file with `get_config()` returning an `ml_collections.ConfigDict`; it starts from
`default_config()` and changes what its task needs. Every key exists in the defaults, so the dict is locked:
a typo in a config file or on the command line (`--config.model.hiden_size=512`) is an error naming the key.
"""

import ast
import difflib
import importlib.util
import os
import traceback

import ml_collections

from seq2seq_jax.data import tasks
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.model import attention, cells, costs, decoder

TASKS = tuple(tasks.GENERATED) + ('cmudict', 'tfds', 'files')
SCHEDULES = ('constant', 'cosine', 'linear', 'rsqrt')
TF_SCHEDULES = ('constant', 'linear', 'exponential', 'inverse_sigmoid')
TOKENIZERS = ('char', 'space', 'spm')
METRICS = ('', 'rouge')
OBJECTIVES = ('xent', 'mrt', 'scst')  # training/objectives.py implements mrt and scst


def default_config() -> ml_collections.ConfigDict:
  """Every key a config may set, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = d = ml_collections.ConfigDict()
  d.task = 'reverse'          # copy | reverse | sort | addition | greeting | dates | cmudict | tfds | files
  d.train_file = ''           # SOURCE<TAB>TARGET files: when set, they replace the task's data
  d.validation_file = ''
  d.test_file = ''
  d.source_tokenizer = 'char'  # char | space | spm
  d.target_tokenizer = 'char'
  d.spm_vocab_size = 8000
  d.num_train = 20_000        # generated tasks: training examples (eval splits use num_eval)
  d.num_eval = 1000
  d.min_len = 1
  d.max_len = 12
  d.alphabet_size = 20        # synthetic tasks: letters 'a'..
  d.max_source_len = 64       # longer examples are an error (files) or dropped with a count (datasets)
  d.max_target_len = 64
  d.batch_size = 128          # global batch, split across devices
  d.bucket_step = 4           # sequence lengths are padded up to a multiple of this (few shapes)
  d.batch_tokens = 0          # > 0: training batches by a token budget instead of batch_size: rows x (S + T)
                              # padded positions <= this, one row count per length bucket (0: off)
  d.tfds_name = ''            # e.g. ted_hrlr_translate/pt_to_en
  d.tfds_source_key = ''
  d.tfds_target_key = ''
  d.data_dir = ''             # TFDS data dir; '' -> $SEQ2SEQ_JAX_DATA_DIR or ~/.cache/seq2seq_jax/tfds
  d.keep_stress = False       # cmudict: keep stress digits on vowels
  d.shared_vocab = False      # one vocabulary for both sides, built from both (needs the same tokenizer)
  d.min_count = 1             # symbols seen fewer times in training are left out of the vocabulary (UNK;
                              # with model.copy a target symbol found in its source is copied instead)
  d.metric = ''               # '' (the task's metrics) | rouge: also ROUGE-1/2/L F1 (rouge-score) in eval

  c.model = m = ml_collections.ConfigDict()
  m.cell = 'gru'              # model.cells.CELLS: gru | lstm
  m.embed_size = 64
  m.encoder_size = 128        # units per direction
  m.decoder_size = 128
  m.num_layers = 1            # encoder and decoder layers
  m.bidirectional = True
  m.attention = 'additive'    # model.attention.KINDS: additive | dot | general | scaled_dot | none | location |
                              # coverage | monotonic | mocha
  m.attention_size = 128      # additive attention's hidden size (also of location, coverage, monotonic, mocha)
  m.location_filters = 32     # location: filters of the convolution over the previous and cumulative weights
  m.location_width = 31       # location: their width in source positions (32 x 31 as in Tacotron 2)
  m.mocha_width = 4           # mocha: chunk width w (source positions ending at the monotonic position)
  m.monotonic_noise = 1.0     # monotonic, mocha: std of the Gaussian noise added to the energies in training
  m.monotonic_init_r = -4.0   # monotonic, mocha: initial offset r of the energies (negative: slow to stop)
  m.style = 'bahdanau'        # model.decoder.STYLES: bahdanau (attend with s_{t-1}) | luong (attend with s_t, attentional vector)
  m.input_feeding = True      # luong: feed the attentional vector to the next step
  m.dropout = 0.0             # on embeddings, between layers and on the decoder output
  m.scan_unroll = 1           # time steps per scan iteration (more: fewer loop overheads, longer compiles)
  m.compute_dtype = 'float32'  # float32 | bfloat16: dtype of activations and matmuls; parameters and
                               # optimizer state stay float32
  m.remat = False             # recompute each scan step's activations in the backward pass (less memory)
  m.copy = False              # pointer-generator (See et al., 2017): copy source symbols, also ones outside the
                              # target vocabulary (extended vocabulary V + source length)
  m.tie_embeddings = False    # output projection = decoder embedding transposed (after a projection to the
                              # embedding size if needed); with data.shared_vocab the encoder shares it too

  c.train = t = ml_collections.ConfigDict()
  t.num_steps = 2000
  t.learning_rate = 3e-3
  t.schedule = 'cosine'       # constant | cosine | linear | rsqrt (after linear warmup)
  t.warmup_steps = 100
  t.weight_decay = 1e-4
  t.clip_norm = 1.0
  t.label_smoothing = 0.0
  t.teacher_forcing = 'constant'   # constant | linear | exponential | inverse_sigmoid
  t.teacher_forcing_ratio = 1.0    # constant: the ratio; else the start value (1.0)
  t.teacher_forcing_min = 0.0      # decaying schedules never go below this
  t.teacher_forcing_k = 1000.0     # decay speed: steps (linear), rate^step (exp), k (inverse sigmoid)
  t.log_every = 50
  t.eval_every = 500
  t.checkpoint_every = 1000   # also at the end; keep it a multiple of eval_every so checkpoints carry metrics
  t.keep_checkpoints = 3      # the last K checkpoints are kept, plus the best by the task's validation metric
  t.eval_examples = 1000      # validation sources decoded at each periodic eval (0: all)
  t.attention_plots = 3       # attention PNGs of the first validation sources at each eval (DIR/attention/)
  t.on_nonfinite = 'stop'     # stop | skip: what a NaN/Inf loss or gradient does (the update is never applied)
  t.coverage_loss = 0.0       # weight λ of See et al.'s coverage loss Σ_t Σ_j min(α_tj, Σ_{t'<t} α_t'j), per token
  t.guided_loss = 0.0         # weight λ of Tachibana et al.'s guided attention loss (any attention kind)
  t.guided_width = 0.2        # its width g in W_nt = 1 - exp(-(n/N - t/T)² / (2 g²))
  t.guided_anneal_steps = 0   # > 0: its weight decays linearly from guided_loss to 0 at this step (0: constant)
  t.accumulate = 1            # k > 1: every optimizer step sums the gradients of k micro-batches (steps count updates)
  t.patience = 0              # > 0: stop after this many evaluations without a better task metric (0: never)
  t.plateau_patience = 0      # > 0: multiply the learning rate by plateau_factor after this many evaluations
                              # without a better task metric (0: off)
  t.plateau_factor = 0.5      # in (0, 1)
  # Training on the task's metric (training/objectives.py). xent: token cross-entropy (what the defaults train);
  # mrt: minimum risk training (Shen et al., 2016); scst: self-critical sequence training (Rennie et al., 2017).
  t.objective = 'xent'        # xent | mrt | scst
  t.xent_weight = 0.0         # mrt, scst: loss = w · token cross-entropy + (1 − w) · sequence loss
  t.cost = ''                 # mrt, scst: model.costs.COSTS: edit | zero_one | bleu | chrf; '' = the task's
                              # (task_cost: edit for G2P / space-separated targets, bleu for tfds, else zero_one)
  t.candidates = 'sample'     # mrt: sample (with train.temperature) | beam (its n-best); scst samples
  t.num_candidates = 4        # mrt: samples / n-best per source; scst: samples per source
  t.temperature = 1.0         # mrt, scst: temperature of the sampled candidates
  t.mrt_alpha = 1.0           # mrt: Q(y) ∝ p(y)^α over the candidate set (α sharpens; Shen et al.: 5e-3 for MT)
  t.mrt_reference = False     # mrt: add the reference to the candidate set
  t.scst_baseline = 'greedy'  # scst: greedy (the greedy output's reward) | mean (of the other samples' rewards)
  t.init_from = ''            # a workdir: start from its parameters (fresh optimizer; same model and vocabularies)
  t.init_step = 'best'        # which of its checkpoints: best | latest | a step number

  c.decode = dc = ml_collections.ConfigDict()
  dc.max_len_a = 1.5          # max output length = a * source_length + b, at most max_len_cap
  dc.max_len_b = 10
  dc.max_len_cap = 256
  dc.batch_size = 256
  # Decoding controls (decoding/controls.py), for every decoder; the defaults change nothing:
  dc.min_len = 0              # output tokens (EOS excluded) before EOS is allowed
  dc.no_repeat_ngram = 0      # n > 0: no n-gram of n tokens occurs twice in an output
  dc.top_p = 1.0              # sampling: draw from the smallest set of tokens with probability >= top_p (1: all)
  dc.prefix_file = ''         # predict / eval / decode-speed: one forced output prefix per input line

  c.parallel = p = ml_collections.ConfigDict()
  p.mode = 'pmap'             # pmap | shard_map
  return c


def letters_task(task: str) -> ml_collections.ConfigDict:
  """The shared setting of the letter tasks (copy, reverse, sort): strings of 1-12 of 20 letters, small model."""
  cfg = default_config()
  cfg.data.task = task
  cfg.data.min_len, cfg.data.max_len, cfg.data.alphabet_size = 1, 12, 20
  cfg.data.batch_size = 64
  cfg.model.embed_size, cfg.model.encoder_size, cfg.model.decoder_size = 32, 64, 64
  cfg.model.attention_size = 64
  cfg.train.num_steps = 1500
  cfg.train.learning_rate = 5e-3
  cfg.train.eval_every = 500
  return cfg


def load_config(path: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
  """Runs `get_config()` from the file at `path`, applies `key=value` overrides and validates."""
  if not os.path.isfile(path):
    raise ConfigError(f'config file not found: {path}')
  spec = importlib.util.spec_from_file_location('_seq2seq_config', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
      raise ConfigError(f'{path}: has no get_config() function')
    cfg = module.get_config()
  except ConfigError:
    raise
  except SyntaxError as e:  # also a file that is not UTF-8
    raise ConfigError(f'{path}:{e.lineno or 1}: {e.msg}') from None
  except Exception as e:  # noqa: BLE001 - whatever the user's Python raised, named by file and line
    raise ConfigError(f'{path}:{_line_in(e, path)}: {type(e).__name__}: {_one_line(e)}') from None
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise ConfigError(f'{path}: get_config() returned a {type(cfg).__name__}, not an ml_collections.ConfigDict')
  check_keys(cfg, default_config(), where=path)
  for item in overrides:
    apply_override(cfg, item)
  validate(cfg)
  return cfg


def _line_in(e: BaseException, path: str) -> str:
  """The line of the config file `path` where `e` was raised (the innermost frame there; '?' if none)."""
  lines = [frame.lineno for frame in traceback.extract_tb(e.__traceback__)
           if os.path.abspath(frame.filename) == os.path.abspath(path)]
  return str(lines[-1]) if lines else '?'


def _one_line(e: BaseException) -> str:
  """ml_collections' type errors: 'Could not override field 'x' (reference). 'a' is of original type ...'."""
  return ' '.join(str(e).split()) or repr(e)


def check_keys(cfg, reference, where: str, prefix: str = '') -> None:
  """Raises ConfigError for a key of `cfg` that the defaults do not have."""
  for key, value in cfg.items():
    name = prefix + key
    if key not in reference:
      raise ConfigError(f'{where}: unknown config key {name!r}{_suggest(key, reference.keys(), prefix)}')
    if isinstance(value, ml_collections.ConfigDict):
      check_keys(value, reference[key], where, name + '.')


def apply_override(cfg: ml_collections.ConfigDict, item: str) -> None:
  """Applies one `model.hidden_size=512` override, parsing the value to the existing field's type."""
  if '=' not in item:
    raise ConfigError(f'config override {item!r} is not of the form key=value')
  name, raw = item.split('=', 1)
  *parents, leaf = name.split('.')
  node, path = cfg, ''
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(f'unknown config key {path + part!r} in override {item!r}')
    node, path = node[part], path + part + '.'
  if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
    raise ConfigError(f'unknown config key {name!r}{_suggest(leaf, node.keys(), path)}')
  node[leaf] = _parse(raw, node[leaf], name)


def _parse(raw: str, old, name: str):
  """Parses `raw` to the type of the field's current value `old`."""
  if isinstance(old, str):
    return raw
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  if isinstance(old, bool):
    if isinstance(value, bool):
      return value
    if raw.lower() in ('true', 'false'):
      return raw.lower() == 'true'
  elif isinstance(old, int) and isinstance(value, int) and not isinstance(value, bool):
    return value
  elif isinstance(old, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  elif isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
    return type(old)(value)
  raise ConfigError(f'config key {name!r} wants a {type(old).__name__}, got {raw!r}')


def _suggest(key: str, keys, prefix: str) -> str:
  close = difflib.get_close_matches(key, list(keys), n=1)
  return f" (did you mean '{prefix}{close[0]}'?)" if close else ''


def validate(cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """The one check of a whole config, when it is loaded: choices from the registries, task names, sizes and
  ranges, length and decode rules, and (with `num_devices`) that the global batch splits evenly over them."""
  def choice(name, value, options):
    if value not in options:
      raise ConfigError(f'config {name}={value!r} is not one of {", ".join(options)}')

  def at_least(lowest, *names):
    for name in names:
      section, key = name.split('.')
      if not cfg[section][key] >= lowest:
        raise ConfigError(f'config {name}={cfg[section][key]!r} must be at least {lowest}')

  def within(name, low, high, high_open=True):
    section, key = name.split('.')
    value = cfg[section][key]
    if not (low <= value < high if high_open else low <= value <= high):
      raise ConfigError(f'config {name}={value!r} must be in [{low:g}, {high:g}{")" if high_open else "]"}')

  m, t, d = cfg.model, cfg.train, cfg.data
  choice('data.task', d.task, TASKS)
  choice('model.cell', m.cell, tuple(cells.CELLS))
  choice('model.attention', m.attention, tuple(attention.KINDS))
  choice('model.style', m.style, tuple(decoder.STYLES))
  choice('train.schedule', t.schedule, SCHEDULES)
  choice('train.teacher_forcing', t.teacher_forcing, TF_SCHEDULES)
  choice('data.source_tokenizer', d.source_tokenizer, TOKENIZERS)
  choice('data.target_tokenizer', d.target_tokenizer, TOKENIZERS)
  choice('model.compute_dtype', m.compute_dtype, ('float32', 'bfloat16'))
  choice('parallel.mode', cfg.parallel.mode, ('pmap', 'shard_map'))
  choice('train.on_nonfinite', t.on_nonfinite, ('stop', 'skip'))
  choice('data.metric', d.metric, METRICS)
  choice('train.objective', t.objective, OBJECTIVES)
  choice('train.cost', t.cost, ('',) + tuple(costs.COSTS))
  choice('train.candidates', t.candidates, ('sample', 'beam'))
  choice('train.scst_baseline', t.scst_baseline, ('greedy', 'mean'))
  if t.objective != 'xent' and m.copy:  # the candidates' search has no extended source ids
    raise ConfigError(f'config train.objective={t.objective!r} does not support model.copy=True (use xent)')
  at_least(1, 'model.embed_size', 'model.encoder_size', 'model.decoder_size', 'model.num_layers',
           'model.attention_size', 'model.scan_unroll', 'data.batch_size', 'data.bucket_step',
           'data.max_source_len', 'data.max_target_len', 'data.num_train', 'data.num_eval', 'data.min_len',
           'data.spm_vocab_size', 'train.num_steps', 'train.log_every', 'train.eval_every',
           'train.checkpoint_every', 'train.keep_checkpoints', 'decode.batch_size', 'decode.max_len_cap',
           'data.min_count', 'train.num_candidates')
  at_least(0, 'train.warmup_steps', 'train.weight_decay', 'train.eval_examples', 'train.attention_plots',
           'train.teacher_forcing_min', 'decode.max_len_a', 'decode.max_len_b', 'model.monotonic_noise',
           'train.coverage_loss', 'train.guided_loss', 'train.guided_anneal_steps', 'train.patience',
           'train.plateau_patience', 'data.batch_tokens', 'decode.min_len', 'decode.no_repeat_ngram')
  at_least(1, 'train.accumulate')
  if not 0 < cfg.decode.top_p <= 1:
    raise ConfigError(f'config decode.top_p={cfg.decode.top_p!r} must be in (0, 1]')
  at_least(1, 'model.location_filters', 'model.location_width', 'model.mocha_width')
  if not t.guided_width > 0:
    raise ConfigError(f'config train.guided_width={t.guided_width!r} must be > 0')
  if not t.learning_rate > 0:
    raise ConfigError(f'config train.learning_rate={t.learning_rate!r} must be > 0')
  if not t.clip_norm > 0:
    raise ConfigError(f'config train.clip_norm={t.clip_norm!r} must be > 0')
  if not t.teacher_forcing_k > 0:
    raise ConfigError(f'config train.teacher_forcing_k={t.teacher_forcing_k!r} must be > 0')
  within('model.dropout', 0.0, 1.0)
  within('train.label_smoothing', 0.0, 1.0)
  within('train.teacher_forcing_ratio', 0.0, 1.0, high_open=False)
  if not 0 < t.plateau_factor < 1:
    raise ConfigError(f'config train.plateau_factor={t.plateau_factor!r} must be in (0, 1)')
  within('train.xent_weight', 0.0, 1.0, high_open=False)
  for name in ('temperature', 'mrt_alpha'):
    if not t[name] > 0:
      raise ConfigError(f'config train.{name}={t[name]!r} must be > 0')
  if t.objective == 'scst' and t.candidates != 'sample':
    raise ConfigError(f"config train.candidates={t.candidates!r}: scst learns from samples (train.candidates="
                      f"'sample')")
  if t.objective == 'scst' and t.scst_baseline == 'mean' and t.num_candidates < 2:
    raise ConfigError(f"config train.num_candidates={t.num_candidates}: scst_baseline='mean' needs at least 2 "
                      f"samples per source")
  if t.objective == 'mrt' and t.num_candidates + t.mrt_reference < 2:
    raise ConfigError(f'config train.num_candidates={t.num_candidates}: minimum risk training needs at least 2 '
                      f'candidates (with train.mrt_reference, 1 and the reference)')
  if t.init_step not in ('best', 'latest') and not t.init_step.isdigit():
    raise ConfigError(f"config train.init_step={t.init_step!r} is not 'best', 'latest' or a step number")
  if d.min_len > d.max_len or not 1 <= d.alphabet_size <= 26:
    raise ConfigError(f'config data.min_len={d.min_len}, data.max_len={d.max_len}, data.alphabet_size='
                      f'{d.alphabet_size}: need 1 <= min_len <= max_len and 1 <= alphabet_size <= 26')
  if d.task == 'files' and not d.train_file:
    raise ConfigError("config data.task='files' needs data.train_file (and validation_file, test_file)")
  if d.task == 'tfds' and not d.tfds_name and not d.train_file:
    raise ConfigError("config data.task='tfds' needs data.tfds_name, e.g. 'ted_hrlr_translate/pt_to_en'")
  kind, style = attention.KINDS[m.attention], decoder.STYLES[m.style]
  memory_size = m.encoder_size * (2 if m.bidirectional else 1)
  if kind.same_size and m.decoder_size != memory_size:
    raise ConfigError(f'config model.attention={m.attention!r} needs decoder_size == encoder output size '
                      f'({m.decoder_size} != {memory_size}); use attention=general or change the sizes')
  if style.needs_attention and not kind.attends:
    raise ConfigError(f'config model.style={m.style!r} needs an attention function, not {m.attention!r}')
  if m.copy and not kind.attends:
    raise ConfigError(f'config model.copy=True copies by attention weights, which attention={m.attention!r} has not')
  if d.shared_vocab and d.source_tokenizer != d.target_tokenizer:
    raise ConfigError(f'config data.shared_vocab=True needs one tokenizer for both sides, not '
                      f'source_tokenizer={d.source_tokenizer!r} and target_tokenizer={d.target_tokenizer!r}')
  for loss in ('coverage_loss', 'guided_loss'):
    if t[loss] > 0 and not kind.attends:
      raise ConfigError(f'config train.{loss}={t[loss]!r} needs attention weights, not attention={m.attention!r}')
  if num_devices is not None and not d.batch_tokens and d.batch_size % num_devices:
    raise ConfigError(f'config data.batch_size={d.batch_size} does not divide by the {num_devices} devices in '
                      f'use; choose a multiple of {num_devices}')


def task_metric(cfg) -> tuple[str, str]:
  """The validation metric that picks the best checkpoint, and 'min' or 'max' for which way is better."""
  if cfg.data.metric == 'rouge':
    return 'rougeL', 'max'
  if cfg.data.task == 'tfds':
    return 'bleu', 'max'
  if cfg.data.task == 'cmudict' or cfg.data.target_tokenizer == 'space':
    return 'wer', 'min'
  return 'exact_match', 'max'


def task_cost(cfg) -> str:
  """The cost that mrt / scst train on: train.cost, or the one of the task's validation metric (WER: the edit
  distance over the reference length, a smoother signal than the 0-1 word error; BLEU: 1 − sentence BLEU;
  exact match: the 0-1 error)."""
  return cfg.train.cost or {'wer': 'edit', 'bleu': 'bleu', 'exact_match': 'zero_one'}[task_metric(cfg)[0]]


# What `eval` may change in a trained run's config: where the data comes from and how to decode; every other key
# would describe another model or another training, and is refused.
INFERENCE_OVERRIDES = ('data.train_file', 'data.validation_file', 'data.test_file', 'data.data_dir',
                       'data.num_eval', 'data.tfds_name', 'data.tfds_source_key', 'data.tfds_target_key',
                       'data.metric', 'decode.')


def apply_inference_override(cfg: ml_collections.ConfigDict, item: str, command: str) -> None:
  """Applies an `eval` override of where the data comes from or how to decode; any other key is an error."""
  name = item.split('=', 1)[0]
  if not any(name == key or (key.endswith('.') and name.startswith(key)) for key in INFERENCE_OVERRIDES):
    raise ConfigError(f'{command}: --config.{name} would change the trained run, not how it is evaluated; '
                      f'only data files/sources and decode.* may be overridden')
  apply_override(cfg, item)
  validate(cfg)
