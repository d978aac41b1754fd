/* symbolize_stub.c: a stand-in for symbolize.c in the fuzz harnesses. A
 * capture names real objects (libc, the interpreter), and libdwfl parsing
 * their DWARF for every input would cost the fuzzer most of its time and say
 * nothing about the reader. This one opens no file: it answers from the bits
 * of the address, 1 to 4 frames per address, one address in four the
 * interpreter loop, so stacks.c's hybrid merge sees every shape of stack. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "symbolize.h"

struct mr_symbolizer {
    unsigned long calls; /* resolves so far */
};

static const char *const names[] = {
    "_PyEval_EvalFrameDefault", /* the eval symbol of every supported CPython */
    "PyObject_Malloc",
    "fuzz_native_function",
    "<unknown>",
};
static const char *const files[] = {"Python/ceval.c", "Objects/obmalloc.c", "", "fuzz.c"};

int mr_sym_new(mr_symbolizer_t **out)
{
    mr_symbolizer_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    *out = s;
    return 0;
}

void mr_sym_destroy(mr_symbolizer_t *s)
{
    free(s);
}

int mr_sym_resolve(mr_symbolizer_t *s, const char *path, uint64_t bias, uint64_t ip,
                   mr_sym_frame_t *frames, int max)
{
    /* The path comes from the capture: reading it whole lets ASan check the
     * reader handed out a terminated string. */
    size_t len = strlen(path);
    s->calls++;
    int n = 1 + (int)((ip >> 4) & 3);
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++) {
        unsigned k = (unsigned)((ip + (uint64_t)i + len + bias) & 3);
        frames[i] = (mr_sym_frame_t){names[k], files[k], (unsigned)(ip & 0xffff)};
    }
    return n < 0 ? 0 : n;
}
