/* fuzz_common.h: what both harnesses do with a decoder's tables once records
 * have been read: walk every stack a report would show, look up every table
 * entry, and read every byte handed out, so that an id or a length the
 * reader let through unchecked shows up as an ASan report here. Header-only,
 * static functions; no state. */
#ifndef MR_FUZZ_COMMON_H
#define MR_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "reader.h"
#include "stacks.h"
#include "symbolize.h"

/* Frames asked for per stack: reports cap theirs too, and a capture can
 * hold a trie thousands of nodes deep. */
#define FUZZ_MAX_FRAMES 128

/* Reads n bytes (ASan checks the whole range at once, in its memcpy) and
 * folds a few of them into a checksum that is used, so the compiler cannot
 * drop the read. */
static uint64_t fuzz_touch(uint64_t h, const void *p, size_t n)
{
    static uint8_t scratch[4096];
    const uint8_t *b = p;
    while (n > 0) {
        size_t k = n < sizeof scratch ? n : sizeof scratch;
        memcpy(scratch, b, k);
        h = (h ^ scratch[0] ^ (uint64_t)scratch[k - 1] << 8 ^ k) * 1099511628211ull;
        b += k;
        n -= k;
    }
    return h;
}

static uint64_t fuzz_touch_str(uint64_t h, const char *s)
{
    return s == NULL ? h : fuzz_touch(h, s, strlen(s));
}

/* The Python stack of NODE `node`, as a report shows it: at most max frames
 * (up to FUZZ_MAX_FRAMES). */
static uint64_t fuzz_python_stack(const mr_reader_t *r, uint64_t node, size_t max, uint64_t h)
{
    mr_pyframe_loc_t frames[FUZZ_MAX_FRAMES];
    size_t n = mr_reader_stack(r, node, frames, max);
    if (n > max)
        abort(); /* wrote past what it was given */
    for (size_t i = 0; i < n; i++) {
        h = fuzz_touch_str(h, frames[i].function);
        h = fuzz_touch_str(h, frames[i].file);
        h ^= frames[i].line + (uint64_t)frames[i].entry;
    }
    return h ^ mr_reader_stack_top_frame(r, node);
}

static uint64_t fuzz_sym_frames(mr_sym_frame_t *f, size_t n, uint64_t h)
{
    if (n > FUZZ_MAX_FRAMES)
        abort();
    for (size_t i = 0; i < n; i++) {
        h = fuzz_touch_str(h, f[i].function);
        h = fuzz_touch_str(h, f[i].file);
        h ^= f[i].line;
    }
    free(f);
    return h;
}

/* One location of a report: its Python, native and hybrid stacks, its
 * thread's name and the loaded objects of its generation. */
static uint64_t fuzz_location(const mr_reader_t *r, mr_symbolizer_t *sym, uint32_t tid,
                              uint64_t stack, uint64_t native, uint64_t generation, uint64_t h)
{
    mr_sym_frame_t *f = NULL;
    size_t n;
    h = fuzz_python_stack(r, stack, FUZZ_MAX_FRAMES, h);
    if (sym != NULL) {
        n = mr_stacks_native(r, sym, native, generation, FUZZ_MAX_FRAMES, &f);
        h = fuzz_sym_frames(f, n, h);
        n = mr_stacks_hybrid(r, sym, stack, native, generation, FUZZ_MAX_FRAMES, &f);
        h = fuzz_sym_frames(f, n, h);
    }
    size_t len = 0;
    const char *name = mr_reader_thread_name(r, tid, &len);
    if (name != NULL)
        h = fuzz_touch(h, name, len + 1); /* with its terminator */
    size_t count = 0;
    const mr_mapping_t *m = mr_reader_mappings(r, generation, &count);
    for (size_t i = 0; m != NULL && i < count; i++) {
        h = fuzz_touch(h, m[i].path, (size_t)m[i].path_len + 1);
        h = fuzz_touch(h, m[i].build_id, m[i].build_id_len);
        h ^= m[i].bias ^ m[i].lo ^ m[i].hi;
    }
    return h;
}

#endif
