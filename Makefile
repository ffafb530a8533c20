# largo: `make demo` (the main job), `make test` (the whole suite, as CI runs it) and `make test-fast` (the suite
# without the tests marked `slow`: under a minute on 2 idle Zen 3 cores, for between two edits). All create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast studies venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,metrics]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/largo demo

# The suite runs one pytest worker per core (pytest-xdist; each worker computes on one thread, so two workers on
# two cores do twice the work of one). `make test JOBS=0` runs it in one process.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

# The CPU studies of docs/STUDIES.md and the sampler benchmark of docs/SAMPLERS.md (~2 h on 2 cores; every
# finished cell is kept, so an interrupted run continues where it stopped).
STUDIES := schedule ema_vs_online balanced cfg_scale sampling_efficiency variance_gap auxiliary_losses
studies: $(STAMP)
	OMP_NUM_THREADS=2 $(PY) benchmarks/sampler_quality.py --checkpoint checkpoints/fashion_mnist-32-cpu --n 500 \
	  --precision bf16 --batch-size 250 --skip heun:100,euler:100,dpmpp3m:100
	for s in $(STUDIES); do OMP_NUM_THREADS=2 $(VENV)/bin/largo sweep configs/studies/$$s.json || exit 1; done
	$(PY) benchmarks/studies_report.py

clean-venv:
	rm -rf $(VENV)
