# The documentation (docs/): `make docs` builds memray into .venv, makes the
# pictures from real captures of the examples (docs/tools/make_pictures.py,
# into docs/_build/pictures) and runs Sphinx with warnings as errors into
# docs/_build/html. Included by the Makefile; `make test` builds it too.
#
# `make docs VPY=/path/to/python` uses that interpreter, with memray, Sphinx
# and furo already installed in it, and builds nothing first.

# Also in PIP_PACKAGES (new venvs get them there); the stamp brings them into
# a .venv made before they were added.
DOCS_PIP_PACKAGES := sphinx furo
DOCS_BUILD := docs/_build
SPHINX_FLAGS := -W --keep-going -n -q -j 2

ifeq ($(origin VPY),command line)
DOCS_DEPS :=
else
DOCS_DEPS := build $(VENV)/.docs-stamp
endif

$(VENV)/.docs-stamp: $(VPY) docs/docs.mk
	$(VPY) -m pip install -q $(DOCS_PIP_PACKAGES)
	@touch $@

docs: $(DOCS_DEPS)
	$(VPY) docs/tools/make_pictures.py $(DOCS_BUILD)/pictures
	$(VPY) -m sphinx $(SPHINX_FLAGS) -b html -d $(DOCS_BUILD)/doctrees docs $(DOCS_BUILD)/html
	@echo "open $(DOCS_BUILD)/html/index.html"
