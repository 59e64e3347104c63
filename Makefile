# pytest-lava — two commands on a fresh Debian 12 machine:
#   make demo   builds the emulated lab and runs a real job on it
#   make test   installs what the tests need, builds the lab, runs the whole suite
PYTHON ?= python3
PYTEST = $(PYTHON) -m pytest
APT_PACKAGES = git
STAMP = .make-stamps

.PHONY: all deps lab demo test test-fast test-lab lint bench clean-lab lab-stop squad

all: test

$(STAMP):
	@mkdir -p $(STAMP)

# Python dependencies (runtime + test) and the few host tools the suite itself calls
deps: $(STAMP)/deps
$(STAMP)/deps: pyproject.toml | $(STAMP)
	@command -v git >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES))
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# the emulated lab: Debian packages, kernels, U-Boot, disk images, artifacts (cached; a second run does nothing)
lab: deps
	lab/labctl build

# a real SQUAD server (its own venv, SQLite) for the integration tests of the SQUAD sink
squad: deps
	$(PYTHON) tests/integration/squad_server.py install

lab-stop:
	lab/labctl stop

# a real job on the built-in lab: QEMU x86_64 board started by the harness, the console live
DEMO_JOB ?= jobs/qemu-x86_64-smoke.yaml
demo: lab
	@was=$$(lab/labctl status --json | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["processes"]["http"]["pid"] or "")'); \
	lab/labctl serve && \
	$(PYTEST) -p no:cacheprovider --lava-job $(DEMO_JOB) --lava-console -rA; rc=$$?; \
	if [ -z "$$was" ]; then lab/labctl stop http; fi; exit $$rc

test: deps lab lint squad
	$(PYTEST) -m "not lab" -q -p no:cacheprovider
	$(PYTEST) -m lab -q -p no:cacheprovider -rfE

test-fast: deps
	$(PYTEST) -m "not lab and not slow" -q -n 4

test-lab: lab
	$(PYTEST) -m lab -q -rfE

lint: deps
	$(PYTHON) -m ruff check .

bench: lab
	$(PYTHON) benchmarks/console.py
	$(PYTHON) benchmarks/validate.py
	$(PYTHON) benchmarks/parallel.py

clean-lab:
	lab/labctl stop || true
	rm -rf lab/build lab/run
