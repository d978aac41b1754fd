/* symbolize.h: native instruction pointer -> function, source file and line,
 * with inlined calls as frames of their own, using elfutils libdwfl. Falls
 * back to the ELF symbol table without DWARF, demangles C++ names, caches per
 * object and per address, and lets libdwfl fetch debug info (debuginfod when
 * DEBUGINFOD_URLS is set). Report-time only: never runs in the tracked
 * process. Not thread-safe: one reader uses one symbolizer. */
#ifndef MR_SYMBOLIZE_H
#define MR_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct mr_sym_frame {
    const char *function; /* "<unknown>" when not found; never NULL */
    const char *file;     /* "" when not known; never NULL */
    unsigned line;        /* 0 when not known */
} mr_sym_frame_t;

typedef struct mr_symbolizer mr_symbolizer_t;

/* 0 or -ENOMEM. */
int mr_sym_new(mr_symbolizer_t **out);
void mr_sym_destroy(mr_symbolizer_t *s);

/* Resolves the return address ip inside the object at path, loaded with load
 * bias `bias`. Writes up to max frames, innermost (the most deeply inlined)
 * first, and returns how many (at least 1 when max >= 1: an unresolvable
 * address gives one "<unknown>" frame). Strings stay valid until
 * mr_sym_destroy. */
int mr_sym_resolve(mr_symbolizer_t *s, const char *path, uint64_t bias, uint64_t ip,
                   mr_sym_frame_t *frames, int max);

#endif
