# speech-stack: `make run` starts the stack, `make test` runs the tests; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := ffmpeg espeak-ng sox
STAMP := $(VENV)/.installed
MODELS := .models/faster-whisper-base/model.bin

.PHONY: setup system-packages venv models run test bench clean

setup: system-packages venv models

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[asr,tts,local,test]"
	$(PY) -m pip check
	@touch $@

models: $(MODELS)
$(MODELS): $(STAMP) scripts/prepare_models.py
	$(PY) scripts/prepare_models.py --out .models

run: setup
	$(PY) -m scripts.devstack

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest

bench: setup
	OMP_NUM_THREADS=1 $(PY) -m bench.bench

clean:
	rm -rf $(VENV) .models .pytest_cache
