# tests/tsan/tsan.mk: the ThreadSanitizer build, run by `make test-tsan`
# (which passes CC, C_FLAGS, C_LIBS, C_CORE_SOURCES, C_TEST_SOURCES and
# TSAN_PYTHON). Everything goes to build/tsan/, never to tests/c/bin, so a
# concurrent `make test-c` is not clobbered. See tests/tsan/README.md.

TSAN_DIR := build/tsan
CORE := src/memray/_core
TSAN_FLAGS := -fsanitize=thread -g -O1 -fno-omit-frame-pointer -fPIC -fno-strict-aliasing
# The recording path: the parts of the extension that run in the tracked
# process (the binding files and module.c are left out: the stress program
# calls the C API directly).
EXT_SOURCES := $(CORE)/hooks.c $(CORE)/tracker.c $(CORE)/pystack.c $(CORE)/pymalloc.c $(CORE)/native.c

# The embedded CPython: headers, libpython and its home (the stdlib).
PY_INCLUDE = $(shell $(TSAN_PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIBDIR = $(shell $(TSAN_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
PY_LDVERSION = $(shell $(TSAN_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')
PY_HOME = $(shell $(TSAN_PYTHON) -c 'import sys; print(sys.base_prefix)')
PY_LIBS = -L$(PY_LIBDIR) -Wl,-rpath,$(PY_LIBDIR) -lpython$(PY_LDVERSION) -lm
UNWIND_LIBS = $(shell pkg-config --libs libunwind 2>/dev/null)

CORE_OBJS = $(patsubst $(CORE)/%.c,$(TSAN_DIR)/obj/%.o,$(C_CORE_SOURCES))
EXT_OBJS = $(patsubst $(CORE)/%.c,$(TSAN_DIR)/obj/%.o,$(EXT_SOURCES))
TEST_BINS = $(patsubst tests/c/%.c,$(TSAN_DIR)/bin/%,$(C_TEST_SOURCES))
HEADERS = $(wildcard $(CORE)/*.h)

.PHONY: all
all: $(TEST_BINS) $(TSAN_DIR)/bin/libinlinechain.so $(TSAN_DIR)/bin/stress \
	$(TSAN_DIR)/bin/libstressdl.so

$(TSAN_DIR)/obj/%.o: $(CORE)/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(C_FLAGS) $(TSAN_FLAGS) -I$(PY_INCLUDE) -c -o $@ $<

# The C unit tests, as test-c builds them, with TSan.
$(TSAN_DIR)/bin/test_%: tests/c/test_%.c $(CORE_OBJS) tests/c/ctest.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(C_FLAGS) $(TSAN_FLAGS) -o $@ $< $(CORE_OBJS) $(C_LIBS)

# test_symbolize reads this one next to its binary (built as test-c does).
$(TSAN_DIR)/bin/libinlinechain.so: tests/lib/inlinechain.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -g -o $@ $(abspath $<)

# The hooks never patch the object they live in, so the recording path is a
# shared object of its own and the stress program's calls go through its GOT,
# as a Python program's calls go through libpython's.
$(TSAN_DIR)/bin/libmemray-tsan.so: $(CORE_OBJS) $(EXT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_FLAGS) -shared -o $@ $^ $(C_LIBS) $(UNWIND_LIBS) $(PY_LIBS)

$(TSAN_DIR)/bin/libstressdl.so: tests/tsan/stressdl.c
	@mkdir -p $(dir $@)
	$(CC) $(TSAN_FLAGS) -shared -o $@ $<

$(TSAN_DIR)/bin/stress: tests/tsan/stress.c $(TSAN_DIR)/bin/libmemray-tsan.so tests/c/ctest.h $(HEADERS)
	$(CC) $(C_FLAGS) $(TSAN_FLAGS) -I$(PY_INCLUDE) -Itests/c \
	  -DSTRESS_PYTHON_HOME='"$(PY_HOME)"' -o $@ $< \
	  -L$(TSAN_DIR)/bin -Wl,-rpath,'$$ORIGIN' -lmemray-tsan $(PY_LIBS) -lpthread -ldl
