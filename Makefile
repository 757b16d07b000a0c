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

# Only when missing; the test fails rather than skip if there is no browser to drive.
$(CHROMIUM):
	@echo "Installing Chromium for the dashboard's browser test"
	@DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } || \
		{ echo "Could not install Chromium: the dashboard test needs $(CHROMIUM)."; \
		  echo "Install Debian's chromium package as root (apt-get install chromium)."; exit 1; }
	@test -x $(CHROMIUM) || { echo "apt-get installed chromium but not $(CHROMIUM)"; exit 1; }

# Only when missing, like Chromium: the end-to-end test fails rather than skip without it.
$(NGINX):
	@echo "Installing nginx for the end-to-end test"
	@DEBIAN_FRONTEND=noninteractive apt-get install -y nginx || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx; } || \
		{ echo "Could not install nginx: the end-to-end test needs $(NGINX)."; \
		  echo "Install Debian's nginx package as root (apt-get install nginx)."; exit 1; }
	@test -x $(NGINX) || { echo "apt-get installed nginx but not $(NGINX)"; exit 1; }

# Only when missing, like Chromium: the README test fails rather than skip without it.
$(JQ):
	@echo "Installing jq for the README's examples"
	@DEBIAN_FRONTEND=noninteractive apt-get install -y jq || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y jq; } || \
		{ echo "Could not install jq: the README test needs $(JQ)."; \
		  echo "Install Debian's jq package as root (apt-get install jq)."; exit 1; }
	@test -x $(JQ) || { echo "apt-get installed jq but not $(JQ)"; exit 1; }

# Only when missing, like Chromium: the order-entry benchmark stops without it.
$(WRK):
	@echo "Installing wrk for the order-entry benchmark"
	@DEBIAN_FRONTEND=noninteractive apt-get install -y wrk || \
		{ DEBIAN_FRONTEND=noninteractive apt-get update && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; } || \
		{ echo "Could not install wrk: the order-entry benchmark needs $(WRK)."; \
		  echo "Install Debian's wrk package as root (apt-get install wrk)."; exit 1; }
	@test -x $(WRK) || { echo "apt-get installed wrk but not $(WRK)"; exit 1; }

# The secrets docker-compose.yml reads, generated once into .env (ignored by git and
# docker); values already there are kept, so running it again changes nothing.
env:
	$(PYTHON) deploy/env.py .env

# Removes the environment and caches, never the data folder (.salesbook): that is the ledger.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
