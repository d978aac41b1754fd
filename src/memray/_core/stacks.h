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
 * innermost first, inlined calls expanded; at most max. Returns the count. */
size_t mr_stacks_native(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t native,
                        uint64_t generation, mr_sym_frame_t *out, size_t max);

/* The hybrid stack: the native frames with every interpreter-loop frame (the
 * eval symbol of the capture's CPython, pyframe.h) replaced by the Python frames of NODE `node`
 * that it ran (matched from the innermost; interpreter frames whose Python frames are hidden are
 * left out). Without native frames it is the Python stack. Returns the count. */
size_t mr_stacks_hybrid(const mr_reader_t *r, mr_symbolizer_t *s, uint64_t node, uint64_t native,
                        uint64_t generation, mr_sym_frame_t *out, size_t max);

#endif
