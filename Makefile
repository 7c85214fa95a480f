# Two commands on a fresh machine (see README.md):
#   make demo   creates .venv, installs grukit with its demo extras, runs `grukit demo`
#   make test   creates/reuses .venv, installs the test extras, runs the default test suite
#   make test-slow  the end-to-end checks left out of the default suite (marked slow)
#   make fuzz   the property-based and fuzz tests with many examples (FUZZ_EXAMPLES=1000 per test)
#   make bench  the speed comparison with torch.nn.GRU, ONNX Runtime and OpenVINO (ARGS="--memory" etc.)
#   make nab    the Numenta Anomaly Benchmark: grukit's detectors beside the published scoreboard
#   make lint       ruff: lint and format check          make typecheck  mypy on the package
#   make docs       the MkDocs site, warnings as errors   make wheel-check  build, install, smoke-test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch's CPU build pinned for development and CI; a local wheel folder is used when present
PIP_OPTS := --quiet --disable-pip-version-check -c constraints.txt \
            $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(BIN)/python -m pip install $(PIP_OPTS)

# the Free Spoken Digit Dataset beside this checkout, when it is there: the speech demo reads it
# offline ($GRUKIT_FSDD, when set, wins; without either the demo downloads it into its cache)
FSDD   := $(abspath $(firstword $(wildcard ../shared/data/fsdd)))
FSDD_ENV := $(if $(FSDD),GRUKIT_FSDD="$${GRUKIT_FSDD:-$(FSDD)}",)
# likewise the Numenta Anomaly Benchmark (`grukit anomaly nab`, the scorer's reproduction test)
NAB    := $(abspath $(firstword $(wildcard ../shared/data/nab)))
NAB_ENV := $(if $(NAB),GRUKIT_NAB="$${GRUKIT_NAB:-$(NAB)}",)

.PHONY: demo test test-slow fuzz install bench nab lint typecheck docs wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) -e '.[demo,test,bench,onnx,keras,apps,data,speech]'

bench: $(BIN)/python
	$(PIP) -e '.[bench]'
	$(BIN)/grukit bench $(ARGS)

demo: $(BIN)/python
	$(PIP) -e '.[demo]'
	$(FSDD_ENV) $(BIN)/grukit demo $(ARGS)

test: $(BIN)/python
	$(PIP) -e '.[test]'
	$(FSDD_ENV) $(NAB_ENV) $(BIN)/python -m pytest -q -m "not slow" $(ARGS)

test-slow: $(BIN)/python
	$(PIP) -e '.[test]'
	$(FSDD_ENV) $(NAB_ENV) $(BIN)/python -m pytest -q -m slow $(ARGS)

fuzz: $(BIN)/python
	$(PIP) -e '.[test]'
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q --hypothesis-show-statistics --durations=10 \
	    tests/test_hypothesis_*.py tests/test_fuzz_*.py $(ARGS)

nab: $(BIN)/python
	$(PIP) -e '.[apps]'
	$(NAB_ENV) $(BIN)/grukit anomaly nab $(ARGS)

# the development and release checks (.ci/run runs them after `make test`)
lint: $(BIN)/python
	$(PIP) -e '.[dev]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/python
	$(PIP) -e '.[dev]'
	$(BIN)/mypy

docs: $(BIN)/python
	$(PIP) -e '.[dev]'
	$(BIN)/mkdocs build --strict --quiet

# the wheel and sdist as a stranger gets them: built (the wheel from the sdist) with the pinned
# setuptools, the wheel installed with only its base dependencies into a fresh environment, and
# scripts/wheel_smoke.py run there from outside the source tree
WHEEL_VENV := build/wheel-venv
wheel-check: $(BIN)/python
	$(PIP) -e '.[dev]'
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/python -m build --no-isolation --outdir dist . >/dev/null
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install $(PIP_OPTS) dist/grukit-*.whl
	cd "$$(mktemp -d)" && $(abspath $(WHEEL_VENV))/bin/python $(abspath scripts/wheel_smoke.py) \
	    --wheel $(CURDIR)/dist/*.whl --sdist $(CURDIR)/dist/*.tar.gz \
	    --source $(abspath src/grukit)

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache demo-report
