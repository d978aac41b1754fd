/* pyframe.h: the version seam. Every read of CPython internals goes through
 * this file: the current frame of a thread state, a frame's code object and
 * instruction, the frames that are not the program's (entry shims, frames
 * still being set up), frame objects, and what reports must know about each
 * interpreter (its eval-loop symbol, its import-system and runpy files).
 * Accessors only: the walk, the cache and the interning are version-neutral
 * and live in pystack.c. Supporting a new CPython means one new section here.
 *
 * Part 1 builds without Python.h (reader side: stacks.c, bind_reader.c).
 * Part 2, the frame accessors for the interpreter being built against, is
 * compiled only where MR_PYFRAME_ACCESSORS is defined (pystack.c), after
 * Python.h. */
#ifndef MR_PYFRAME_H
#define MR_PYFRAME_H

#include <stddef.h>
#include <stdint.h>

/* ---- Part 1: report-time facts, by the version a capture was made with ---- */

typedef struct mr_pyversion_facts {
    uint32_t since;            /* first PY_VERSION_HEX (major.minor) they hold for */
    const char *eval_symbol;   /* native frame that runs one run of Python frames */
    const char *import_files;  /* '\n'-separated: files of the import system */
    const char *import_native; /* '\n'-separated: eval-loop helpers that import */
    const char *runpy_files;   /* '\n'-separated: files of runpy (python -m, memray run) */
} mr_pyversion_facts_t;

#define MR_PY_IMPORT_FILES                                                                         \
    "<frozen importlib._bootstrap>\n<frozen importlib._bootstrap_external>\n"                      \
    "importlib/_bootstrap.py\nimportlib/_bootstrap_external.py"
#define MR_PY_IMPORT_NATIVE "import_name\nimport_from\nimport_all_from"
#define MR_PY_RUNPY_FILES "<frozen runpy>\nrunpy.py"

/* The facts for a capture made with hexversion (its header's PY_VERSION_HEX);
 * a version older than every row (or 0, unknown) gets the oldest row, a newer
 * one the newest. With n_rows: the whole table, newest first, and its size. */
static inline const mr_pyversion_facts_t *mr_pyversion_facts(uint32_t hexversion, size_t *n_rows)
{
    /* Newest first. 3.11 through 3.13 agree on all of these. */
    static const mr_pyversion_facts_t table[] = {
        {0x030D0000, "_PyEval_EvalFrameDefault", MR_PY_IMPORT_FILES, MR_PY_IMPORT_NATIVE,
         MR_PY_RUNPY_FILES},
        {0x030C0000, "_PyEval_EvalFrameDefault", MR_PY_IMPORT_FILES, MR_PY_IMPORT_NATIVE,
         MR_PY_RUNPY_FILES},
        {0x030B0000, "_PyEval_EvalFrameDefault", MR_PY_IMPORT_FILES, MR_PY_IMPORT_NATIVE,
         MR_PY_RUNPY_FILES},
    };
    size_t n = sizeof table / sizeof table[0];
    if (n_rows != NULL) {
        *n_rows = n;
        return table;
    }
    for (size_t i = 0; i < n; i++)
        if (hexversion >= table[i].since)
            return &table[i];
    return &table[n - 1];
}

/* ---- Part 2: frame accessors for the interpreter being built against ---- */

#ifdef MR_PYFRAME_ACCESSORS

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "pyframe.h knows CPython 3.11 to 3.13: add a section for this version"
#endif

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE

typedef struct _PyInterpreterFrame mr_pyiframe_t;

/* The caller's frame, or NULL. */
static inline const mr_pyiframe_t *mr_pyframe_previous(const mr_pyiframe_t *f)
{
    return f->previous;
}

/* The interpreter frame a frame object (PyFrame_Check'ed) stands for. */
static inline const mr_pyiframe_t *mr_pyframe_of_object(PyObject *frame_object)
{
    return ((PyFrameObject *)frame_object)->f_frame;
}

#if PY_VERSION_HEX < 0x030D0000
/* 3.11, 3.12: the frame chain hangs off the thread's cframe; f_code is always
 * a code object; prev_instr is the last instruction started. */

static inline const mr_pyiframe_t *mr_pyframe_current(PyThreadState *ts)
{
    return ts->cframe != NULL ? ts->cframe->current_frame : NULL;
}

static inline PyCodeObject *mr_pyframe_code(const mr_pyiframe_t *f)
{
    return f->f_code;
}

static inline const _Py_CODEUNIT *mr_pyframe_instr(const mr_pyiframe_t *f)
{
    return f->prev_instr;
}

#else
/* 3.13: the thread state holds the current frame itself; f_executable is a
 * code object or None (the C-stack shims); instr_ptr points at the
 * instruction being executed, not the one before it. */

static inline const mr_pyiframe_t *mr_pyframe_current(PyThreadState *ts)
{
    return ts->current_frame;
}

static inline PyCodeObject *mr_pyframe_code(const mr_pyiframe_t *f)
{
    PyObject *x = f->f_executable;
    return (x != NULL && PyCode_Check(x)) ? (PyCodeObject *)x : NULL;
}

static inline const _Py_CODEUNIT *mr_pyframe_instr(const mr_pyiframe_t *f)
{
    return f->instr_ptr;
}

#endif

#if PY_VERSION_HEX < 0x030C0000
/* 3.11: the first frame of each _PyEval_EvalFrameDefault call says so itself
 * (is_entry); there are no shim frames. */

static inline int mr_pyframe_is_entry(const mr_pyiframe_t *f)
{
    return f->is_entry;
}

/* Not a frame of the program: one still copying its arguments or making its
 * cells has no line yet. For frames mr_pyframe_code gave a code object for. */
static inline int mr_pyframe_skipped(const mr_pyiframe_t *f)
{
    return _PyFrame_IsIncomplete((mr_pyiframe_t *)f);
}

#else
/* 3.12, 3.13: is_entry is gone; each _PyEval_EvalFrameDefault call pushes a
 * shim frame owned by the C stack below its first frame. */

static inline int mr_pyframe_is_entry(const mr_pyiframe_t *f)
{
    return f->previous == NULL || f->previous->owner == FRAME_OWNED_BY_CSTACK;
}

/* Not a frame of the program: a shim, or a frame still copying its arguments
 * or making its cells (no line yet). For frames mr_pyframe_code gave a code
 * object for. */
static inline int mr_pyframe_skipped(const mr_pyiframe_t *f)
{
    return f->owner == FRAME_OWNED_BY_CSTACK || _PyFrame_IsIncomplete((mr_pyiframe_t *)f);
}

#endif

/* The line of the instruction at instr in code (0: none). */
static inline int mr_pyframe_line(PyCodeObject *code, const _Py_CODEUNIT *instr)
{
    int line = PyCode_Addr2Line(code, (int)((instr - _PyCode_CODE(code)) * sizeof(_Py_CODEUNIT)));
    return line < 0 ? 0 : line;
}

/* Code units from the start of code to instr: with the code, identifies a
 * place in the program. */
static inline uint64_t mr_pyframe_offset(PyCodeObject *code, const _Py_CODEUNIT *instr)
{
    return (uint64_t)(instr - _PyCode_CODE(code));
}

#endif /* MR_PYFRAME_ACCESSORS */

#endif
