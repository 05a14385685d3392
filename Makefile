# Two commands for a fresh machine (see README):
#   make notebooks   run the whole series headless (papermill) and write figures/
#   make test        unit tests + every notebook in the smoke profile (nbval)
# Knobs: PROFILE=auto|smoke|cpu|gpu  NOTEBOOKS=01,02  DEVICE=auto|cpu|cuda|cuda:N|mps

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
DEVICE ?= auto
NOTEBOOKS ?= all
PYTEST_ARGS ?=

.PHONY: notebooks test unit bench venv clean help readme-figures colab-badges exercises fresh-check gpu-check site grade

help:
	@echo "make notebooks [PROFILE=auto|smoke|cpu|gpu] [NOTEBOOKS=01,02] [DEVICE=auto|cpu|cuda|mps]"
	@echo "make test       unit tests and every notebook in the smoke profile"
	@echo "make unit       the fast unit tests (tests marked slow are left to make test)"
	@echo "make bench      benchmark runner (python -m benchmarks)"
	@echo "make gpu-check  on a CUDA machine: time every gpu preset's step and sampler call against the predictions"
	@echo "make readme-figures [NOTEBOOKS=04,07]  copy the README's figures from the last run into figures/readme/"
	@echo "make colab-badges  re-stamp Colab badges, install cells and run costs from pyproject's [project.urls]"
	@echo "make exercises  write the student edition (exercises/) from the notebooks' solution markers"
	@echo "make grade SUBMISSIONS=folder [GRADES=dir]  run submitted student notebooks (smoke, one process each), grades.csv + pages"
	@echo "make site [NOTEBOOKS=01,02]  the last finished cpu or gpu run as a static site in build/site/ (refuses smoke runs)"
	@echo "make fresh-check  clone HEAD under /tmp with no data and a new HOME, run make test and two smoke notebooks"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml tools/jupyterlab-overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[lab,dev,fid,site,course]"
	@# JupyterLab from this venv saves widget state with a notebook, so a saved explorer reopens intact
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $@

notebooks: venv
	$(PY) -m nbhelpers.runner --profile $(PROFILE) --device $(DEVICE) --notebooks $(NOTEBOOKS)

# Hermetic: the root conftest.py sends every output (build/, checkpoints/, figures/) to a temporary
# folder, and a smoke run without MNIST or AFHQ uses the built-in stand-ins, so no data set or network is needed.
test: venv
	NBHELPERS_PROFILE=smoke $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=900 -p no:cacheprovider $(PYTEST_ARGS)

# the fast unit tests (< 1 min); `make test` runs every test and the notebooks
unit: venv
	$(PY) -m pytest tests -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(PY) -m benchmarks --profile $(if $(filter auto,$(PROFILE)),cpu,$(PROFILE)) --device $(DEVICE) --notebooks $(NOTEBOOKS)

# copy the README's gallery figures from the last run into figures/readme/ (committed), with their source
readme-figures: venv
	$(PY) -m tools.readme_figures --notebooks $(NOTEBOOKS)

colab-badges: venv
	$(PY) -m tools.stamp_colab

# the student edition: solution bodies become NotImplementedError, answer cells prompts (committed; a test checks it)
exercises: venv
	$(PY) -m tools.make_exercises

# grade submitted student notebooks: each runs in the smoke profile in a process and temporary folder of its own,
# under a time limit; grades.csv, one HTML page per submission and the executed notebooks go to GRADES
grade: venv
	$(if $(SUBMISSIONS),,$(error make grade needs SUBMISSIONS=<folder of submitted notebooks>))
	$(PY) -m tools.grade $(SUBMISSIONS) $(if $(GRADES),--out $(GRADES))

# the executed series as a static site (Sphinx + MyST-NB, tools/site/): build/site/ from the last finished cpu or gpu
# run under $NBHELPERS_OUTPUT_DIR (else the checkout); a smoke run or a run stopped half-way is refused
site: venv
	$(PY) -m tools.site --notebooks $(NOTEBOOKS)

# on a CUDA machine: one timed step and one sampler call of every gpu preset, measured against the predictions
gpu-check: venv
	$(PY) -m benchmarks.gpu_check --device $(if $(filter auto,$(DEVICE)),cuda,$(DEVICE))

# the README's two commands in a fresh clone under /tmp: new HOME, no data directory (tools/fresh_check.sh)
fresh-check:
	bash tools/fresh_check.sh

clean:
	rm -rf build
