/* writer.h: encoding capture records (format.h) into a sink. Keeps the delta
 * state (previous address, stack ids, thread) and the implicit id counters.
 * Callers serialize every call on one writer (the tracker's writer lock). All
 * functions return 0 or -errno from the sink; the caller decides what a
 * failure means. */
#ifndef MR_WRITER_H
#define MR_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "format.h"
#include "sink.h"

typedef struct mr_header_info {
    uint16_t flags; /* MR_FLAG_* */
    uint8_t python_allocator;
    uint32_t pid;
    uint32_t parent_pid; /* tracked process this one descends from, 0: none */
    uint32_t main_tid;
    uint64_t start_ms;
    uint32_t py_hexversion;
    uint32_t interval_ms;
    const char *command_line;
    size_t command_line_len;
    uint64_t sample_every; /* with MR_FLAG_SAMPLED: written as the first record */
} mr_header_info_t;

typedef struct mr_writer {
    mr_sink_t *sink;
    uint16_t flags;    /* from the header */
    uint32_t tid;      /* thread of the previous ALLOC/FREE, 0 = none yet */
    uint64_t addr;     /* address of the previous ALLOC/FREE */
    uint64_t stack;    /* python stack of the previous ALLOC */
    uint64_t native;   /* native stack of the previous ALLOC */
    uint64_t n_allocs; /* ALLOC records written */
    uint64_t n_codes, n_frames, n_nodes, n_native_nodes; /* ids handed out */
    /* No locking here: the owner's. When set, every record is checked to be
     * written with it held (check.h; the tracker sets its writer lock). */
    mr_mutex_t *lock;
} mr_writer_t;

/* Starts a capture on sink: writes the header. The writer owns the sink from
 * here on. */
int mr_writer_init(mr_writer_t *w, mr_sink_t *sink, const mr_header_info_t *info);

/* The sink, through the writer that owns it (callers never reach into it).
 * Each is safe on a writer without a sink (never started, or closed). */
int mr_writer_is_open(const mr_writer_t *w);
uint64_t mr_writer_size(const mr_writer_t *w); /* bytes written so far, 0 if none */
int mr_writer_flush(mr_writer_t *w);           /* hands buffered bytes on */
int mr_writer_close(mr_writer_t *w);           /* finishes the capture: 0 or -errno */
void mr_writer_abandon(mr_writer_t *w);        /* lets go without finishing (fork child) */

int mr_writer_alloc(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t addr, uint64_t size,
                    uint64_t stack, uint64_t native);
/* len: the unmapped length for MUNMAP, ignored otherwise. */
int mr_writer_free(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t addr, uint64_t len);

/* Definitions; each hands out the next id of its kind through *id. */
int mr_writer_code(mr_writer_t *w, const char *name, size_t name_len, const char *file,
                   size_t file_len, uint32_t first_line, uint64_t *id);
int mr_writer_frame(mr_writer_t *w, uint64_t code, uint32_t line, uint64_t *id);
int mr_writer_node(mr_writer_t *w, uint64_t parent, uint64_t frame, int entry, uint64_t *id);
int mr_writer_native_node(mr_writer_t *w, uint64_t parent, uint64_t ip, uint64_t *id);

/* One loaded object of a MAPPINGS record. */
typedef struct mr_mapping_entry {
    const char *path;
    size_t path_len;
    uint64_t bias;   /* load bias */
    uint64_t lo, hi; /* runtime addresses of its PT_LOAD segments, hi exclusive */
    const uint8_t *build_id;
    size_t build_id_len;
} mr_mapping_entry_t;

int mr_writer_mappings(mr_writer_t *w, uint64_t generation, const mr_mapping_entry_t *entries,
                       size_t n);

int mr_writer_thread_name(mr_writer_t *w, uint32_t tid, const char *name, size_t len);
int mr_writer_memory(mr_writer_t *w, uint64_t ms, uint64_t rss, int has_heap, uint64_t heap);
/* As mr_writer_memory, with split when not NULL (MR_MEMORY_HAS_SPLIT; the
 * caller keeps rss == anon + file + shmem). */
int mr_writer_memory_split(mr_writer_t *w, uint64_t ms, uint64_t rss, int has_heap, uint64_t heap,
                           const mr_mem_split_t *split);
int mr_writer_agg(mr_writer_t *w, uint32_t tid, unsigned allocator, uint64_t stack, uint64_t native,
                  uint64_t peak_n, uint64_t peak_bytes, uint64_t leak_n, uint64_t leak_bytes);
/* An EXT record of kind with body [body, body + len). */
int mr_writer_ext(mr_writer_t *w, unsigned kind, const uint8_t *body, size_t len);
/* A PAD record of n bytes in all (n >= 2). */
int mr_writer_pad(mr_writer_t *w, size_t n);
/* Merged captures (MR_FLAG_MERGED): switches to process `number`, defining
 * it when define is not NULL (it must then be the next number). */
typedef struct mr_process_info {
    uint32_t pid, parent_pid;
    uint64_t start_offset_ms;
    uint32_t py_hexversion;
    const char *command_line;
    size_t command_line_len;
} mr_process_info_t;
int mr_writer_process(mr_writer_t *w, uint32_t number, const mr_process_info_t *define);
/* Process `number` (defined) ended here. */
int mr_writer_process_exit(mr_writer_t *w, uint32_t number);
int mr_writer_trailer(mr_writer_t *w, uint64_t ms, uint64_t total_allocs, uint64_t peak,
                      unsigned flags);

#endif
