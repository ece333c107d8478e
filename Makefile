# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean reproduce reproduce-smoke

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (the local CPU wheel), then the project with its dev and offline extras.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,offline]"
	touch $(STAMP)

install: $(STAMP)

# Build the demo store on the miniature world, then serve the rater app on it.
demo: $(STAMP)
	$(BIN)/curator demo --db sqlite:///demo.db --accounts
	$(BIN)/annotate-ui --db sqlite:///demo.db --host 127.0.0.1 --port 7860

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# The miniature Tango 2 (experiments/miniature_tango2.py): pretrain → curation with the learned
# model → β / learning-rate sweep on validation → base / SFT / DPO arms → trainer compare.
# Resumable: rerun to continue. One torch thread: on a shared machine two threads ran 5-10x slower.
reproduce: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python experiments/miniature_tango2.py --out runs/miniature_tango2

reproduce-smoke: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python experiments/miniature_tango2.py --out runs/miniature_tango2_smoke --smoke

clean:
	rm -rf $(VENV) demo.db demo_audio runs
