/* reader.h: decoding a capture (format.h) from a source. Parses and checks
 * the header, then hands out records one at a time while keeping the small
 * tables they refer to (code objects, frames, stack trie nodes, native nodes,
 * thread names, loaded-object maps, trailer). Never holds the event stream:
 * memory is bounded by the tables. Plain C: 0 or -errno, a message in an error
 * buffer, no printing, no Python. */
#ifndef MR_READER_H
#define MR_READER_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "source.h"

/* What kind of failure an error code means; the message says the details.
 * Other -errno values come from the operating system (open, read). */
#define MR_ERR_EMPTY (-ENODATA)         /* "capture file is empty" */
#define MR_ERR_NOT_CAPTURE (-ENOEXEC)   /* wrong magic or a header cut short */
#define MR_ERR_NEWER (-EPROTONOSUPPORT) /* format version or flags from a newer memray */
#define MR_ERR_CORRUPT (-EBADMSG)       /* "corrupt capture at byte N: ..." */

#define MR_READER_ERRLEN 256

typedef struct mr_header {
    uint16_t version;
    uint16_t flags;           /* MR_FLAG_* */
    uint8_t python_allocator; /* MR_PYALLOC_* as written (may be unknown) */
    uint32_t pid;
    uint32_t parent_pid; /* 0: none (a root capture, or an older one) */
    uint32_t main_tid;
    uint64_t start_ms; /* unix time in ms */
    uint32_t py_hexversion;
    uint32_t interval_ms;
    char *command_line; /* NUL-terminated copy, owned by the reader */
    size_t command_line_len;
    uint64_t sample_every; /* MR_FLAG_SAMPLED: from the EXT record that follows */
} mr_header_t;

typedef struct mr_code {
    const char *name; /* NUL-terminated; owned by the reader */
    const char *file;
    uint32_t name_len, file_len;
    uint64_t first_line;
} mr_code_t;

typedef struct mr_mapping {
    const char *path; /* "" = the main program */
    uint64_t bias;    /* load bias */
    uint64_t lo, hi;  /* [lo, hi): runtime addresses of its PT_LOAD segments */
    const uint8_t *build_id;
    uint32_t path_len, build_id_len;
} mr_mapping_t;

typedef struct mr_trailer {
    uint64_t ms; /* since start */
    uint64_t total_allocs;
    uint64_t peak;  /* bytes */
    uint64_t flags; /* MR_TRAILER_* */
} mr_trailer_t;

/* One decoded record. type is MR_REC_*; which fields are set depends on it.
 * ALLOC/FREE/MEMORY/AGG/TRAILER and PROCESS exits are always returned;
 * definitions (THREAD,
 * CODE, FRAME, NODE, THREAD_NAME, NATIVE_NODE, MAPPINGS, PROCESS) only in raw
 * mode. */
typedef struct mr_event {
    unsigned type;
    unsigned arg;        /* the tag's high nibble */
    uint64_t offset;     /* of the tag byte in the (decompressed) stream */
    uint32_t tid;        /* ALLOC/FREE: the current thread; THREAD, THREAD_NAME, AGG */
    unsigned allocator;  /* ALLOC/FREE/AGG: enum mr_allocator */
    uint64_t addr;       /* ALLOC/FREE: absolute, deltas resolved */
    uint64_t size;       /* ALLOC: bytes; FREE: unmapped length for MUNMAP, else 0 */
    uint64_t stack;      /* ALLOC/AGG: NODE id, 0 = none */
    uint64_t native;     /* ALLOC/AGG: NATIVE_NODE id, 0 = none */
    uint64_t generation; /* ALLOC/AGG: MAPPINGS generation in effect, 0 = none yet */
    uint64_t ms, rss;    /* MEMORY: ms since start; TRAILER: ms */
    uint64_t heap;       /* MEMORY with MR_MEMORY_HAS_HEAP */
    int has_heap;
    mr_mem_split_t split; /* MEMORY with MR_MEMORY_HAS_SPLIT (else zeros) */
    int has_split;
    uint64_t peak_n, peak_bytes, leak_n, leak_bytes; /* AGG */
    uint64_t id;     /* definitions: the id the record defines; MAPPINGS: generation;
                      * PROCESS: the process number; EXT: the kind */
    uint64_t a, b;   /* FRAME: code, line; NODE/NATIVE_NODE: parent, frame/ip;
                      * MAPPINGS: count; TRAILER: total allocations, peak */
    uint64_t flags;  /* TRAILER */
    const char *str; /* THREAD_NAME: the name (NUL-terminated, valid until next) */
    size_t str_len;
} mr_event_t;

typedef struct mr_reader mr_reader_t;

/* Opens path (or takes ownership of fd, see mr_source_open_fd) and reads the
 * header. On failure returns an MR_ERR_* or -errno code and writes a message
 * ("capture file is empty", "not a memray capture file", ...) to err. */
int mr_reader_open(mr_reader_t **out, const char *path, char *err, size_t errlen);
int mr_reader_open_fd(mr_reader_t **out, int fd, char *err, size_t errlen);
/* Reads from src, which the reader owns from here on (closed on failure). */
int mr_reader_open_source(mr_reader_t **out, mr_source_t *src, char *err, size_t errlen);
void mr_reader_close(mr_reader_t *r);

/* Closes the file but keeps the tables, for resolving stacks later. */
void mr_reader_release_source(mr_reader_t *r);

const mr_header_t *mr_reader_header(const mr_reader_t *r);
int mr_reader_compressed(const mr_reader_t *r);

/* raw != 0: mr_reader_next also returns definition records. */
void mr_reader_set_raw(mr_reader_t *r, int raw);

/* The next record: 1 and *ev set; 0 at the end of the data (a TRAILER was
 * returned, a zero tag, end of file, or a record cut off by the end of file);
 * <0 on error (MR_ERR_CORRUPT or -errno; message in mr_reader_error). After
 * the end or an error it keeps returning the same. */
int mr_reader_next(mr_reader_t *r, mr_event_t *ev);

const char *mr_reader_error(const mr_reader_t *r);

/* How the data ended, valid once mr_reader_next returned 0. */
typedef enum mr_end {
    MR_END_NONE = 0,  /* not yet */
    MR_END_TRAILER,   /* a TRAILER record */
    MR_END_ZERO,      /* a zero tag: the writer stopped without a trailer */
    MR_END_EOF,       /* end of file between records */
    MR_END_TRUNCATED, /* end of file inside a record */
} mr_end_t;
mr_end_t mr_reader_end(const mr_reader_t *r);

/* Records decoded so far, by MR_REC_* type (index 0..15). */
uint64_t mr_reader_count(const mr_reader_t *r, unsigned type);
/* Stream offset of the next record. */
uint64_t mr_reader_offset(const mr_reader_t *r);

/* Tables. Ids count from 1; lookups of 0 or an id not yet defined return
 * NULL / -ENOENT. */
const mr_code_t *mr_reader_code(const mr_reader_t *r, uint64_t id);
int mr_reader_frame(const mr_reader_t *r, uint64_t id, uint64_t *code, uint64_t *line);
int mr_reader_node(const mr_reader_t *r, uint64_t id, uint64_t *parent, uint64_t *frame,
                   int *entry);
int mr_reader_native_node(const mr_reader_t *r, uint64_t id, uint64_t *parent, uint64_t *ip);
/* The latest name recorded for tid, NULL if none. */
const char *mr_reader_thread_name(const mr_reader_t *r, uint32_t tid, size_t *len);
/* Merged captures (MR_FLAG_MERGED): the processes defined so far, numbered
 * from 1 in the order of their PROCESS records. */
typedef struct mr_process {
    uint32_t number;
    uint32_t pid, parent_pid;
    uint64_t start_offset_ms; /* from the header's start_ms */
    uint32_t py_hexversion;
    const char *command_line; /* NUL-terminated, owned by the reader */
    size_t command_line_len;
} mr_process_t;
size_t mr_reader_n_processes(const mr_reader_t *r);
/* NULL when number is not defined (yet). */
const mr_process_t *mr_reader_process(const mr_reader_t *r, uint32_t number);
/* The process tid ran in (its first THREAD record), 0 if unknown or not a
 * merged capture. */
uint32_t mr_reader_thread_process(const mr_reader_t *r, uint32_t tid);
/* The loaded objects of MAPPINGS generation gen, NULL if never recorded:
 * those that cover an address, sorted by start address (lo). */
const mr_mapping_t *mr_reader_mappings(const mr_reader_t *r, uint64_t gen, size_t *count);
/* NULL until a TRAILER was decoded. */
const mr_trailer_t *mr_reader_trailer(const mr_reader_t *r);

/* One Python frame of a stack, strings owned by the reader. */
typedef struct mr_pyframe_loc {
    const char *function;
    const char *file;
    uint64_t line;
    int entry; /* MR_NODE_ENTRY was set on the node */
} mr_pyframe_loc_t;

/* Walks the Python stack of NODE id `node`, innermost first, writing up to max
 * frames; returns how many were written. Every reachable id was checked when
 * its record was decoded, so the walk always ends at the root. */
size_t mr_reader_stack(const mr_reader_t *r, uint64_t node, mr_pyframe_loc_t *out, size_t max);
/* The innermost FRAME id of a stack (0 for none). */
uint64_t mr_reader_stack_top_frame(const mr_reader_t *r, uint64_t node);

/* Formats the header as one line of text (no newline), like snprintf. */
int mr_reader_format_header(const mr_reader_t *r, char *buf, size_t len);

/* Formats ev as one line of text (no newline) for `memray parse`; returns the
 * length it needed, like snprintf. */
int mr_reader_format_event(const mr_reader_t *r, const mr_event_t *ev, char *buf, size_t len);

#endif
