# pytest-lava — two commands on a fresh Debian 12 machine:
#   make demo   builds the emulated lab and runs a real job on it
#   make test   installs what the tests need, builds the lab, runs the whole suite
#
# Everything runs in the project's own virtual environment (.venv), made from PYTHON with the
# NEWEST releases of the dependencies; `make test-oldest` runs the fast suite in .venv-oldest with
# the OLDEST releases pyproject.toml admits (constraints/oldest.txt). CI runs both.
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PYTEST = $(PY) -m pytest
OLDEST_VENV ?= .venv-oldest
# postgresql: the tests of the PostgreSQL board pool start their own server (initdb + pg_ctl);
# openssh-server, iproute2: the multi-host test's dispatcher hosts (network namespaces with an sshd)
APT_PACKAGES = git python3-venv postgresql openssh-server iproute2 adb gcc
STAMP = .make-stamps

.PHONY: all host-tools deps lab demo test test-fast test-lab test-oldest lint bench clean-lab lab-stop squad lava-test-full

all: test

$(STAMP):
	@mkdir -p $(STAMP)

# host tools the Makefile itself needs: git, and venv/ensurepip (Debian 12's own python3 has
# neither until python3-venv is installed; its pip refuses to install into the system, PEP 668);
# and PostgreSQL's server binaries, sshd and ip for the tests of the PostgreSQL pool across hosts;
# adb (the real client) and cc for the tests of the lab's adbd (lab/adbd/adbd.c, built natively)
host-tools: $(STAMP)/host-tools
$(STAMP)/host-tools: Makefile | $(STAMP)
	@if ! command -v git >/dev/null || ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
		|| ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! test -x /usr/sbin/sshd \
		|| ! command -v ip >/dev/null || ! command -v adb >/dev/null || ! command -v cc >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES); fi
	@touch $@

# Python dependencies (runtime + test), newest releases, in .venv
deps: $(STAMP)/deps
$(STAMP)/deps: pyproject.toml $(STAMP)/host-tools
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U -e '.[test]'
	@$(PY) -m pip list --disable-pip-version-check 2>/dev/null | grep -i -E '^(pytest|pytest-xdist|pytest-timeout|pluggy) '
	@touch $@

# the emulated lab: Debian packages, kernels, U-Boot, disk images, artifacts (cached; a second run does nothing)
lab: deps
	lab/labctl build

# a real SQUAD server (its own venv, SQLite) for the integration tests of the SQUAD sink
squad: deps
	$(PY) tests/integration/squad_server.py install

lab-stop:
	lab/labctl stop

# a real job on the built-in lab: QEMU x86_64 board started by the harness, the console live
DEMO_JOB ?= jobs/qemu-x86_64-smoke.yaml
demo: lab
	@was=$$(lab/labctl status --json | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["processes"]["http"]["pid"] or "")'); \
	lab/labctl serve && \
	$(PYTEST) -p no:cacheprovider --lava-job $(DEMO_JOB) --lava-console -rA; rc=$$?; \
	if [ -z "$$was" ]; then lab/labctl stop http; fi; exit $$rc

# jobs/lab-arm64-lava-test.json with the WHOLE posixtestsuite (every test the lab built, ~900; CI
# runs its sigaction subset) and install_python (python3-pip from the lab's repository + the lab's
# wheel: ~4.5 min of TCG, too long for CI): arm64-01 is started by the job's power command
LAVA_TEST_FULL = lava-results/lab-arm64-lava-test-full.json
lava-test-full: lab
	@$(PY) -c 'import json,sys; j=json.load(open("jobs/lab-arm64-lava-test.json")); \
	j["job_name"]+="-full"; j["timeout"]=10800; \
	[a["parameters"].update(test_options="", timeout=9000) for a in j["actions"] \
	 if a.get("parameters",{}).get("test_name")=="posixtestsuite"]; \
	[a["parameters"].update(install_python=["http://10.0.2.2:7080/python/lab_hello-1.0-py3-none-any.whl"]) \
	 for a in j["actions"] if a["command"]=="lava_test_install"]; \
	import os; os.makedirs("lava-results",exist_ok=True); json.dump(j,open(sys.argv[1],"w"),indent=1)' $(LAVA_TEST_FULL)
	$(PYTEST) -p no:cacheprovider --lava-job $(LAVA_TEST_FULL) --lava-device arm64-01 \
		--junitxml=lava-results/lab-arm64-lava-test-full.xml -q -rfE; rc=$$?; lab/labctl stop arm64-01; exit $$rc

test: deps lab lint squad
	$(PYTEST) -m "not lab" -q -p no:cacheprovider
	$(PYTEST) -m lab -q -p no:cacheprovider -rfE

test-fast: deps
	$(PYTEST) -m "not lab and not slow" -q -n 4

# the suite without lab boards, on the oldest supported releases (constraints/oldest.txt)
test-oldest: $(STAMP)/host-tools
	@test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints/oldest.txt -e '.[test]'
	@$(OLDEST_VENV)/bin/python -m pip list --disable-pip-version-check 2>/dev/null | grep -i -E '^(pytest|pytest-xdist|pytest-timeout|pluggy) '
	$(OLDEST_VENV)/bin/python -m pytest -m "not lab and not integration" -q -p no:cacheprovider -n 2

test-lab: lab
	$(PYTEST) -m lab -q -rfE

lint: deps
	$(PY) -m ruff check .

bench: lab
	@rm -f .bench-summary; for b in console.py validate.py "parallel.py --boot-time 8" overhead.py scale.py; do \
		echo "== benchmarks/$$b"; $(PY) benchmarks/$$b > .bench-out 2>&1; rc=$$?; cat .bench-out; \
		[ $$rc = 0 ] || exit $$rc; \
		echo "$$b: $$(tail -n 1 .bench-out)" >> .bench-summary; done; \
	echo "== summary"; cat .bench-summary; rm -f .bench-out .bench-summary

clean-lab:
	lab/labctl stop || true
	rm -rf lab/build lab/run
