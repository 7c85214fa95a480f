# Two commands on a fresh machine (see README.md):
#   make demo   creates .venv, installs grukit with its demo extras, runs `grukit demo`
#   make test   creates/reuses .venv, installs the test extras, runs the default test suite
#   make test-slow  the end-to-end checks left out of the default suite (marked slow)
#   make bench  the speed comparison with torch.nn.GRU, ONNX Runtime and OpenVINO (ARGS="--memory" etc.)
#   make nab    the Numenta Anomaly Benchmark: grukit's detectors beside the published scoreboard
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch's CPU build pinned for development and CI; a local wheel folder is used when present
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
          $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

# the Free Spoken Digit Dataset beside this checkout, when it is there: the speech demo reads it
# offline ($GRUKIT_FSDD, when set, wins; without either the demo downloads it into its cache)
FSDD   := $(abspath $(firstword $(wildcard ../shared/data/fsdd)))
FSDD_ENV := $(if $(FSDD),GRUKIT_FSDD="$${GRUKIT_FSDD:-$(FSDD)}",)
# likewise the Numenta Anomaly Benchmark (`grukit anomaly nab`, the scorer's reproduction test)
NAB    := $(abspath $(firstword $(wildcard ../shared/data/nab)))
NAB_ENV := $(if $(NAB),GRUKIT_NAB="$${GRUKIT_NAB:-$(NAB)}",)

.PHONY: demo test test-slow install bench nab clean

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

nab: $(BIN)/python
	$(PIP) -e '.[apps]'
	$(NAB_ENV) $(BIN)/grukit anomaly nab $(ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache demo-report
