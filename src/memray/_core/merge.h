/* merge.h: one capture of many processes (`memray merge`, and reporters given
 * several captures). The inputs' records are interleaved on one time axis,
 * a memory-sample interval at a time: each input's stream is cut at its
 * MEMORY records into chunks, and chunks go out in the order of the time
 * they end (inputs' clocks put on the earliest start). Each process keeps
 * what sets it apart:
 *   - a PROCESS record (format.h) says which process the records that follow
 *     belong to; the header carries MR_FLAG_MERGED;
 *   - addresses get the process number in bits 48-63, so blocks of two
 *     processes at the same address stay two blocks (an input address at or
 *     above 2^48 cannot be merged);
 *   - thread ids stay as recorded unless two processes used the same one:
 *     the later process's thread then gets an id from 2^30 up;
 *   - CODE, FRAME, NODE and NATIVE_NODE ids and MAPPINGS generations are
 *     renumbered into the merged capture's.
 * MEMORY records are the sums over the processes running at each sample
 * (the latest sample of each), and a process's end is recorded where it
 * falls (its blocks leave the heap but stay its leaks), so the memory plot
 * and the high water mark of the merged capture are those of the sum. Aggregated inputs give an
 * aggregated capture.
 *
 * A merge first reads every input once (to learn its sample times and check
 * it), then writes or streams. Inputs must be regular files (read twice). */
#ifndef MR_MERGE_H
#define MR_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "reader.h"

#define MR_MERGE_MAX_INPUTS 65535u
#define MR_MERGE_ADDR_BITS MR_PROCESS_ADDR_SHIFT

typedef struct mr_merge mr_merge_t;

/* Takes the descriptors (closed by mr_merge_release, or here on failure) and
 * the names to use in messages. Checks every input: readable to its end, one
 * file format (all ALL_ALLOCATIONS or all AGGREGATED_ALLOCATIONS), not
 * itself a merge, no file or process given twice. 0, or an error code with
 * one line in err naming the input. */
int mr_merge_open(mr_merge_t **out, const int *fds, const char *const *names, size_t n, char *err,
                  size_t errlen);

/* Writes the merged capture to path (created; replaced if overwrite). */
int mr_merge_write(mr_merge_t *m, const char *path, int overwrite, char *err, size_t errlen);

/* A reader of the merged capture made while it is read: nothing is written
 * to disk. The reader holds a reference to m. Errors of an input while it is
 * read come out as read errors of the reader, naming the input. */
int mr_merge_reader(mr_merge_t *m, mr_reader_t **out, char *err, size_t errlen);

/* Drops the caller's reference; the merge goes when no reader holds one. */
void mr_merge_release(mr_merge_t *m);

#endif
