# Everyday commands. Each one sets up .venv first: created if missing, and the project
# (with its dev tools) reinstalled only when pyproject.toml changed since the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The dashboard's browser test drives Debian's Chromium.
CHROMIUM := /usr/bin/chromium
# The end-to-end test routes its requests through Debian's nginx with deploy/nginx.conf.
NGINX := /usr/sbin/nginx
# The README's examples, which a test runs as written, keep ids with jq.
JQ := /usr/bin/jq
# The order-entry benchmark drives HTTP load with Debian's wrk.
WRK := /usr/bin/wrk
ARGS ?=

.PHONY: run test lint typecheck format bench clean env

run: $(STAMP)
	$(BIN)/salesbook run $(ARGS)

test: $(STAMP) $(CHROMIUM) $(NGINX) $(JQ)
	$(BIN)/pytest $(ARGS)

lint: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with the settings in pyproject.toml: every function of services/ and shared/ typed.
typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) $(WRK)
	$(BIN)/python -m bench $(ARGS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Salesbook needs Python 3.11 or newer as $(PYTHON) (make PYTHON=python3.12 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and benchmarks drive, each installed only when its program is
# missing; what needs it fails rather than skip without it.
# $(call apt_install,PACKAGE,PROGRAM,WHAT NEEDS IT)
define apt_install
	@echo "Installing $(1) for $(3)"
	@DEBIAN_FRONTEND=noninteractive apt-get install -y $(1) || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y $(1); } || \
		{ echo "Could not install $(1): $(3) needs $(2)."; \
		  echo "Install Debian's $(1) package as root (apt-get install $(1))."; exit 1; }
	@test -x $(2) || { echo "apt-get installed $(1) but not $(2)"; exit 1; }
endef

$(CHROMIUM):
	$(call apt_install,chromium,$(CHROMIUM),the dashboard's browser test)

$(NGINX):
	$(call apt_install,nginx,$(NGINX),the end-to-end test)

$(JQ):
	$(call apt_install,jq,$(JQ),the README's examples test)

$(WRK):
	$(call apt_install,wrk,$(WRK),the order-entry benchmark)

# The secrets docker-compose.yml reads, generated once into .env (ignored by git and
# docker); values already there are kept, so running it again changes nothing.
env:
	$(PYTHON) deploy/env.py .env

# Removes the environment and caches, never the data folder (.salesbook): that is the ledger.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
