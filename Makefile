# MRE Liver Review — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)

.PHONY: run test setup system-deps bench phantom clean-venv

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

## Debian packages: chromium (real-browser test), dcmtk (storescu/dcmsend/echoscu/dsrdump for the
## DICOM listener tests and the README example), dicom3tools (dciodvfy, the DICOM validator the
## SEG/SR tests run), orthanc (the PACS of the end-to-end hospital test) and postgresql-15 (the store
## tests start their own server); skipped when all are already there
system-deps:
	@test -x /usr/bin/chromium -a -x /usr/bin/storescu -a -x /usr/bin/dsrdump -a -x /usr/bin/dciodvfy \
	  -a -x /usr/sbin/Orthanc -a -x /usr/lib/postgresql/15/bin/initdb || { \
	  SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium dcmtk dicom3tools \
	    orthanc postgresql-15; }

## Start the web app on http://localhost:8501 (demo data, SQLite, shipped weights)
run: setup
	$(PY) -m mre_core.app.serve

## The whole test suite (unit, end-to-end CLI, app)
test: setup system-deps
	$(PY) -m pytest

bench: setup
	$(PY) -m mre_core.bench

phantom: setup
	$(PY) -m mre_core phantom --out phantom_out --patients 20 --seed 0 --contact-sheet

clean-venv:
	rm -rf $(VENV)
