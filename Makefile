# speech-stack: `make run` starts the stack, `make test` runs the tests; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := ffmpeg espeak-ng sox openssl chromium redis-server
# image builds (buildah, mmdebstrap) and the real node (containerd, runc, CNI plugins, iptables);
# gcc + libc6-dev build the node's static pause binary
NODE_APT_PACKAGES := buildah mmdebstrap containerd runc containernetworking-plugins iptables conntrack curl gcc libc6-dev
STAMP := $(VENV)/.installed
MODELS := .models/faster-whisper-base/model.bin

K8S_TOOLS_BIN := $(HOME)/.cache/speech-stack/k8s-tools/bin

.PHONY: js-clients setup system-packages node-packages venv models k8s-tools images cluster-up cluster-down node-volumes dev-node run-node delete-node run lint test bench constraints clean

setup: system-packages venv models

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

node-packages:
	@missing=""; for p in $(NODE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[asr,tts,local,test]"
	$(PY) -m pip check
	@touch $@

# After changing a pin in pyproject.toml and installing: refreeze constraints.txt, then derive
# constraints-torch.txt (the pins of the images' shared torch layer) from it.
constraints: venv
	( head -n 1 constraints.txt; $(PY) -m pip freeze --exclude-editable ) > constraints.txt.new
	mv constraints.txt.new constraints.txt
	$(PY) scripts/torch_constraints.py

models: $(MODELS)
$(MODELS): $(STAMP) scripts/prepare_models.py
	$(PY) scripts/prepare_models.py --out .models

# helm, kubeconform, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and KServe's
# controller, built from the Go module proxy into a cache keyed by version (cold ~17 min, warm < 1 s).
k8s-tools:
	tools/k8s/install.sh

# The three images from their Dockerfiles with buildah, FROM a Debian base made by mmdebstrap, into
# a cache keyed by their inputs (tools/images/build.sh; warm: seconds). Needs the venv's pip for the
# wheelhouse and k8s-tools for the node's pause image.
images: node-packages venv k8s-tools
	PIP_PYTHON=$(PY) tools/images/build.sh

# A real single-node cluster on this machine running the images (tools/node/up.sh; state, logs
# and kubeconfig in .k8s/node); cluster-down stops it and restores the host.
cluster-up: images
	KUBECTL=$(VENV)/bin/kubectl tools/node/up.sh

cluster-down:
	KUBECTL=$(VENV)/bin/kubectl tools/node/down.sh

# The dev loop on that node: the models on local volumes (namespace speech), then skaffold's `node`
# profile (buildah builds, the node's loopback registry, Helm, Traefik's Ingress at speech.example.com).
NODE_KUBECONFIG := .k8s/node/pki/admin.kubeconfig
# skaffold's own settings (no update check, no usage data) in a file of the project's, not ~/.skaffold
SKAFFOLD_GLOBAL := .k8s/skaffold-config.yaml
SKAFFOLD := $(K8S_TOOLS_BIN)/skaffold
SKAFFOLD_NODE := -p node --default-repo 127.0.0.1:21500 --kubeconfig $(NODE_KUBECONFIG) --config $(SKAFFOLD_GLOBAL)
SKAFFOLD_CACHE := --cache-file .k8s/skaffold-cache

$(SKAFFOLD_GLOBAL):
	mkdir -p $(dir $@) && printf 'global:\n  update-check: false\n  collect-metrics: false\n  survey:\n    disable-prompt: true\n' > $@

node-volumes: models
	$(PY) -m scripts.node_volumes .k8s/node speech | $(VENV)/bin/kubectl --kubeconfig $(NODE_KUBECONFIG) apply -f -

dev-node: node-volumes $(SKAFFOLD_GLOBAL)
	PATH=$(CURDIR)/$(VENV)/bin:$(K8S_TOOLS_BIN):$$PATH $(SKAFFOLD) dev $(SKAFFOLD_NODE) $(SKAFFOLD_CACHE)

run-node: node-volumes $(SKAFFOLD_GLOBAL)
	PATH=$(CURDIR)/$(VENV)/bin:$(K8S_TOOLS_BIN):$$PATH $(SKAFFOLD) run $(SKAFFOLD_NODE) $(SKAFFOLD_CACHE)

delete-node: $(SKAFFOLD_GLOBAL)
	PATH=$(CURDIR)/$(VENV)/bin:$(K8S_TOOLS_BIN):$$PATH $(SKAFFOLD) delete $(SKAFFOLD_NODE)

run: setup
	$(PY) -m scripts.devstack

# The lint and type gate: ruff's formatter and linter (rules in pyproject.toml) over all Python, mypy over
# all Python (annotations required in services/).
lint: setup
	$(PY) -m ruff format --check services scripts bench tests
	$(PY) -m ruff check services scripts bench tests
	$(PY) -m mypy

# The official openai Node SDK (pinned in tests/clients/node/package-lock.json) for the realtime test
# through the TLS Ingress; npm's cache is kept outside the repository.
JS_CLIENTS := tests/clients/node/node_modules/.package-lock.json
js-clients: $(JS_CLIENTS)
$(JS_CLIENTS): tests/clients/node/package-lock.json
	npm ci --prefix tests/clients/node --no-audit --no-fund --cache $(HOME)/.cache/speech-stack/npm --loglevel=error

test: setup k8s-tools lint images js-clients
	OMP_NUM_THREADS=1 $(PY) -m pytest

bench: setup
	OMP_NUM_THREADS=1 $(PY) -m bench.bench

clean:
	rm -rf $(VENV) .models .pytest_cache
