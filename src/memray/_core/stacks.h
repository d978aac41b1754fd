/* stacks.h: the native and hybrid stacks of a record, at report time: native
 * trie ids walked through the reader's tables, each address resolved in the
 * loaded-object map of its generation by the symbolizer, and, for hybrid
 * stacks, each interpreter-loop frame replaced by the Python frames it ran.
 * Plain C, no Python. */
#ifndef MR_STACKS_H
#define MR_STACKS_H

#include <stddef.h>
#include <stdint.h>

#include "reader.h"
#include "symbolize.h"

/* Frames of NATIVE_NODE `native` under MAPPINGS generation `generation`,
 * innermost first, inlined calls expanded; at most max, however deep the
 * stack. *out is a malloc'ed array the caller frees (NULL when there are no
 * frames). Returns the count, or 0 with *out NULL when out of memory. */
size_t mr_stacks_native(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t native,
                        uint64_t generation, size_t max, mr_sym_frame_t **out);

/* The hybrid stack: the native frames with every interpreter-loop frame (the
 * eval symbol of the capture's CPython, pyframe.h) replaced by the Python
 * frames of NODE `node` that it ran (matched from the innermost). When Python
 * frames are hidden (those above the `with` that started tracking), the stack
 * ends at its outermost shown Python frame, as in memray 1.x; otherwise it
 * goes on to the thread's native start frames. Without native frames it is
 * the Python stack. Output as for mr_stacks_native. */
size_t mr_stacks_hybrid(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t node, uint64_t native,
                        uint64_t generation, size_t max, mr_sym_frame_t **out);

#endif
