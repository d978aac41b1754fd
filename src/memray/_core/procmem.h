/* procmem.h: the process's resident memory and what backs it, read from
 * /proc without allocating (the sampler thread reads it with the tracker
 * guard raised). Owns the open /proc files and their parsers; knows nothing
 * of captures or locks. Plain C: 0 or -errno.
 *
 * Source, chosen by measurement (docs/format.md, MEMORY): /proc/<pid>/status,
 * whose RssAnon, RssFile and RssShmem are the kernel's per-process counters
 * (VmRSS is their sum), about 10 us to read however large the process is.
 * /proc/<pid>/smaps_rollup walks every page table: 25 us for an empty
 * process, 0.8 ms for a bare interpreter, 25 ms more per GB resident, and it
 * has no resident shmem count (only the proportional Pss_Shmem). Kernels
 * older than 4.5 lack the Rss* lines: then /proc/<pid>/statm (resident and
 * shared pages) gives anonymous = resident - shared and counts shared memory
 * as file-backed. */
#ifndef MR_PROCMEM_H
#define MR_PROCMEM_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

typedef struct mr_procmem {
    int status_fd;      /* /proc/<pid>/status, -1: none */
    int statm_fd;       /* /proc/<pid>/statm, -1: none */
    uint64_t page_size; /* bytes, from sysconf */
} mr_procmem_t;

#define MR_PROCMEM_INIT                                                                            \
    {                                                                                              \
        .status_fd = -1, .statm_fd = -1, .page_size = 0                                            \
    }

/* One reading. */
typedef struct mr_procmem_sample {
    uint64_t rss;         /* bytes; 0 when nothing could be read */
    int has_split;        /* split is set, and rss == anon + file + shmem */
    mr_mem_split_t split; /* bytes: anon, file, shmem (mapped is not ours: 0) */
} mr_procmem_sample_t;

/* Opens this process's files (a descriptor of /proc/self/... keeps naming
 * the process that opened it: a forked child must open its own). 0 when at
 * least one opened, else -errno; pm is usable (reads give rss 0) either way. */
int mr_procmem_open(mr_procmem_t *pm);
void mr_procmem_close(mr_procmem_t *pm);

/* Reads the current resident memory into *out. No allocation, no stdio: a
 * few preads into a stack buffer. */
void mr_procmem_read(const mr_procmem_t *pm, mr_procmem_sample_t *out);

/* What the status parser found so far (kB values, as the file gives them). */
#define MR_STATUS_ANON 0x1u
#define MR_STATUS_FILE 0x2u
#define MR_STATUS_SHMEM 0x4u
#define MR_STATUS_ALL (MR_STATUS_ANON | MR_STATUS_FILE | MR_STATUS_SHMEM)
typedef struct mr_status_fields {
    uint64_t anon_kb, file_kb, shmem_kb;
    unsigned found; /* MR_STATUS_* */
} mr_status_fields_t;

/* Parses the complete lines of [buf, buf + len), a piece of
 * /proc/<pid>/status, into *acc ("RssAnon:\t  1234 kB" and the like; other
 * lines and malformed values are skipped). With mid_line, the piece starts
 * inside a line, which is skipped up to its newline. Returns the bytes of
 * complete lines (up to and including the last newline): the caller reads on
 * from there. Pure, for tests. */
size_t mr_procmem_parse_status(const char *buf, size_t len, int mid_line, mr_status_fields_t *acc);

/* Parses /proc/<pid>/statm ("size resident shared text lib data dt", in
 * pages): *resident and *shared in pages. 0, or -EINVAL when the first three
 * numbers are not there. Pure, for tests. */
int mr_procmem_parse_statm(const char *buf, size_t len, uint64_t *resident, uint64_t *shared);

#endif
