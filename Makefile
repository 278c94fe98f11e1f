# Two entry points, each creating .venv with the pinned versions of requirements.lock on first use:
#   make train   trains the main job (G2P on CMUdict) and reports its test-split figures
#   make test    runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= workdirs/g2p
CONFIG ?= configs/g2p_cmudict.py

# XLA:CPU allocates every step's buffers afresh: 2 MiB pages spare most page faults (see process.use_huge_pages)
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: train test clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

train: $(BIN)/.installed
	$(BIN)/seq2seq-jax train --config $(CONFIG) --workdir $(WORKDIR)
	$(BIN)/seq2seq-jax eval --workdir $(WORKDIR) --split test
	$(BIN)/seq2seq-jax eval --workdir $(WORKDIR) --split test --beam 5

# One pytest process per test file: a crash in one (XLA runs in-process) cannot take the others down, and no
# process accumulates every file's compiled programs. Every file runs; the status is non-zero if any failed.
# The files share one XLA compilation cache (tests/conftest.py), removed at the end.
test: $(BIN)/.installed
	@cache=$$(mktemp -d -t seq2seq_jax_tests_XXXXXX); failed=""; \
	for f in tests/test_*.py; do echo "== $$f"; \
	  SEQ2SEQ_JAX_TEST_CACHE=$$cache $(BIN)/pytest -q -p no:cacheprovider $$f || failed="$$failed $$f"; done; \
	rm -rf $$cache; if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) workdirs
