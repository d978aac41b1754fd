/* reader.c: the capture decoder. Owns the header, the delta state and the
 * definition tables; checks every length, id and tag before using it, so any
 * byte sequence gives records, a clean end or an error, never a crash. Events
 * are handed out one at a time and not kept. */
#define _GNU_SOURCE
#include "reader.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "hashmap.h"
#include "util.h"

/* Bytes the decoder asks the source for before each record, so only string
 * payloads need a second request. */
#define REC_WINDOW MR_READ_LOOKAHEAD
/* Most objects one MAPPINGS record may list; a real process has hundreds. */
#define MAX_MAPPINGS (1u << 20)
/* Ids are stored in 32 bits in the trie tables; a capture needing more is
 * treated as corrupt rather than silently wrapped. */
#define MAX_TABLE_IDS ((uint64_t)UINT32_MAX - 1)

typedef struct frame_entry {
    uint64_t line;
    uint32_t code;
} frame_entry_t;

typedef struct node_entry {
    uint32_t parent;
    uint32_t frame : 31;
    uint32_t entry : 1;
} node_entry_t;

typedef struct native_entry {
    uint64_t ip;
    uint32_t parent;
} native_entry_t;

typedef struct thread_entry {
    uint32_t tid;
    uint32_t len;
    char *name;       /* malloc'd, replaced on rename; NULL: none recorded */
    uint32_t process; /* merged captures: the process it ran in, 0 = none */
} thread_entry_t;

/* One process of a merged capture, with its stream state. */
typedef struct process_entry {
    mr_process_t info;   /* command line in the arena */
    uint64_t generation; /* its MAPPINGS generation in effect */
} process_entry_t;

/* tid -> index into the threads array. */
typedef struct thread_slot {
    uint32_t tid;
    uint32_t item; /* index + 1, 0 = empty */
} thread_slot_t;

static inline uint64_t thread_slot_hash(const thread_slot_t *s)
{
    return mr_hash64(s->tid);
}

static inline int thread_slot_match(const thread_slot_t *s, uint32_t tid)
{
    return s->tid == tid;
}

static inline int thread_slot_empty(const thread_slot_t *s)
{
    return s->item == 0;
}

static inline void thread_slot_clear(thread_slot_t *s)
{
    s->item = 0;
}

MR_HASHMAP_DEFINE(threadmap, thread_slot_t, uint32_t, mr_hash64, thread_slot_hash,
                  thread_slot_match, thread_slot_empty, thread_slot_clear, 50)

typedef struct mapping_gen {
    uint64_t gen;
    mr_mapping_t *maps; /* malloc'd; strings live in the arena */
    size_t count;
} mapping_gen_t;

/* Strings of the tables: chunks that never move, so pointers into them stay
 * valid for the reader's life. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
} arena_chunk_t;

#define ARENA_CHUNK ((size_t)64 << 10)

struct mr_reader {
    mr_source_t *src;
    mr_header_t hdr;
    int raw;

    /* The window of source bytes being decoded: [base, end), next record at
     * p; base is at stream offset base_off. eof: nothing lies beyond end. */
    const uint8_t *base, *p, *end;
    uint64_t base_off;
    int eof;

    mr_end_t ended;
    int err; /* sticky error code, 0 if none */
    char errbuf[MR_READER_ERRLEN];

    /* Delta state of format.h: against the previous record of the stream. */
    uint32_t tid;
    uint64_t prev_addr, prev_stack, prev_native;
    uint64_t generation;
    uint64_t counts[16];

    mr_code_t *codes;
    size_t n_codes, cap_codes;
    frame_entry_t *frames;
    size_t n_frames, cap_frames;
    node_entry_t *nodes;
    size_t n_nodes, cap_nodes;
    native_entry_t *natives;
    size_t n_natives, cap_natives;

    thread_entry_t *threads;
    size_t n_threads, cap_threads;
    threadmap_t thread_index;

    mapping_gen_t *gens;
    size_t n_gens, cap_gens;

    process_entry_t *procs; /* merged captures */
    size_t n_procs, cap_procs;
    uint32_t process; /* current, 0 = none yet */

    mr_trailer_t trailer;
    int has_trailer;
    arena_chunk_t *arena;
    mr_hm_t strings; /* hash of an object path or build id -> its copy in the arena */
};

/* ---- small helpers ---------------------------------------------------- */

static char *arena_alloc(mr_reader_t *r, size_t n)
{
    arena_chunk_t *c = r->arena;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = r->arena;
        r->arena = c;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strdup(mr_reader_t *r, const uint8_t *s, size_t n)
{
    char *p = arena_alloc(r, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Object paths and build ids come again in every MAPPINGS record (each
 * dlopen writes the whole list): one copy of each. A string whose hash is
 * taken by another is copied again, which is only less thrifty. */
static const char *intern(mr_reader_t *r, const uint8_t *s, size_t n)
{
    uint64_t key = mr_hash_bytes(s, n, 0), found;
    if (mr_hm_get(&r->strings, key, &found)) {
        const char *p = (const char *)(uintptr_t)found;
        if (memcmp(p, s, n) == 0 && p[n] == '\0')
            return p;
        return arena_strdup(r, s, n);
    }
    char *copy = arena_strdup(r, s, n);
    if (copy != NULL)
        (void)mr_hm_put(&r->strings, key, (uintptr_t)copy); /* no room: not shared */
    return copy;
}

static int set_error(mr_reader_t *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errbuf, sizeof r->errbuf, fmt, ap);
    va_end(ap);
    r->err = code;
    return code;
}

static uint64_t rec_offset(const mr_reader_t *r, const uint8_t *at)
{
    return r->base_off + (uint64_t)(at - r->base);
}

/* A corrupt record: the message names the offset of its tag byte. */
static int corrupt(mr_reader_t *r, const uint8_t *rec, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return set_error(r, MR_ERR_CORRUPT, "corrupt capture at byte %" PRIu64 ": %s",
                     rec_offset(r, rec), what);
}

static int io_error(mr_reader_t *r, int rc)
{
    if (rc == -EBADMSG)
        return set_error(r, MR_ERR_CORRUPT, "corrupt capture at byte %" PRIu64 ": %s",
                         rec_offset(r, r->p), mr_source_detail(r->src));
    return set_error(r, rc, "read error at byte %" PRIu64 ": %s", rec_offset(r, r->p),
                     strerror(-rc));
}

/* Makes n bytes from r->p available in the window, or as many as remain
 * (setting r->eof). Bytes before r->p are released. 0 or -errno. */
static int ensure(mr_reader_t *r, size_t n)
{
    if ((size_t)(r->end - r->p) >= n || r->eof)
        return 0;
    size_t done = (size_t)(r->p - r->base);
    mr_source_consume(r->src, done);
    r->base_off += done;
    const uint8_t *p;
    ssize_t got = mr_source_peek(r->src, n, &p);
    if (got < 0) {
        r->base = r->p = r->end = NULL;
        return (int)got;
    }
    r->base = r->p = p;
    r->end = p + got;
    if ((size_t)got < n)
        r->eof = 1;
    return 0;
}

/* ---- header ----------------------------------------------------------- */

static int read_header(mr_reader_t *r, char *err, size_t errlen)
{
    int rc = ensure(r, MR_HEADER_SIZE);
    if (rc < 0) {
        io_error(r, rc);
        goto fail;
    }
    size_t got = (size_t)(r->end - r->p);
    const uint8_t *h = r->p;
    if (got == 0) {
        rc = set_error(r, MR_ERR_EMPTY, "capture file is empty");
        goto fail;
    }
    size_t cmp = got < MR_MAGIC_LEN ? got : MR_MAGIC_LEN;
    if (memcmp(h, MR_MAGIC, cmp) != 0) {
        rc = set_error(r, MR_ERR_NOT_CAPTURE, "not a memray capture file");
        goto fail;
    }
    if (got < MR_HEADER_SIZE) {
        rc = set_error(r, MR_ERR_NOT_CAPTURE, "truncated capture header (%zu of %d bytes)", got,
                       MR_HEADER_SIZE);
        goto fail;
    }
    mr_header_t *hd = &r->hdr;
    hd->version = mr_get_u16(h + MR_HOFF_VERSION);
    hd->flags = mr_get_u16(h + MR_HOFF_FLAGS);
    hd->python_allocator = h[MR_HOFF_PYALLOC];
    hd->pid = mr_get_u32(h + MR_HOFF_PID);
    hd->parent_pid = mr_get_u32(h + MR_HOFF_PARENT_PID);
    hd->main_tid = mr_get_u32(h + MR_HOFF_MAIN_TID);
    hd->start_ms = mr_get_u64(h + MR_HOFF_START_MS);
    hd->py_hexversion = mr_get_u32(h + MR_HOFF_PY_HEXVERSION);
    hd->interval_ms = mr_get_u32(h + MR_HOFF_INTERVAL_MS);
    uint32_t cmd_len = mr_get_u32(h + MR_HOFF_CMDLINE_LEN);
    if (hd->version > MR_FORMAT_VERSION) {
        rc = set_error(r, MR_ERR_NEWER, "written by a newer memray (format version %u)",
                       hd->version);
        goto fail;
    }
    if (hd->version == 0) {
        rc = corrupt(r, h + MR_HOFF_VERSION, "format version 0");
        goto fail;
    }
    if (hd->flags & ~MR_FLAGS_KNOWN) {
        rc = set_error(r, MR_ERR_NEWER, "written by a newer memray (unknown header flags 0x%x)",
                       hd->flags & ~MR_FLAGS_KNOWN);
        goto fail;
    }
    if (cmd_len > MR_MAX_STRING) {
        rc = corrupt(r, h + MR_HOFF_CMDLINE_LEN, "command line of %u bytes", cmd_len);
        goto fail;
    }
    if ((rc = ensure(r, MR_HEADER_SIZE + (size_t)cmd_len)) < 0) {
        io_error(r, rc);
        goto fail;
    }
    if ((size_t)(r->end - r->p) < MR_HEADER_SIZE + (size_t)cmd_len) {
        rc = set_error(r, MR_ERR_NOT_CAPTURE, "truncated capture header (command line cut off)");
        goto fail;
    }
    hd->command_line = malloc((size_t)cmd_len + 1);
    if (hd->command_line == NULL) {
        rc = set_error(r, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(hd->command_line, r->p + MR_HEADER_SIZE, cmd_len);
    hd->command_line[cmd_len] = '\0';
    hd->command_line_len = cmd_len;
    r->p += MR_HEADER_SIZE + cmd_len;
    if (hd->flags & MR_FLAG_SAMPLED) {
        /* The interval is part of what the header says: read its record now. */
        mr_event_t ev;
        int raw = r->raw;
        r->raw = 1;
        rc = mr_reader_next(r, &ev);
        r->raw = raw;
        if (rc <= 0 || ev.type != MR_REC_EXT || ev.id != MR_EXT_SAMPLING) {
            if (rc >= 0)
                set_error(r, MR_ERR_CORRUPT,
                          "corrupt capture at byte %zu: sampled capture without its interval",
                          (size_t)MR_HEADER_SIZE + cmd_len);
            rc = r->err;
            goto fail;
        }
    }
    return 0;
fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", r->errbuf);
    return rc;
}

static int open_common(mr_reader_t **out, mr_source_t *src, char *err, size_t errlen)
{
    mr_reader_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        mr_source_close(src);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->src = src;
    int rc = read_header(r, err, errlen);
    if (rc < 0) {
        mr_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int open_failed(int rc, const char *what, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, strerror(-rc));
    return rc;
}

int mr_reader_open(mr_reader_t **out, const char *path, char *err, size_t errlen)
{
    mr_source_t *src;
    int rc = mr_source_open(&src, path);
    if (rc < 0)
        return open_failed(rc, "cannot open", err, errlen);
    return open_common(out, src, err, errlen);
}

int mr_reader_open_source(mr_reader_t **out, mr_source_t *src, char *err, size_t errlen)
{
    return open_common(out, src, err, errlen);
}

int mr_reader_open_fd(mr_reader_t **out, int fd, char *err, size_t errlen)
{
    mr_source_t *src;
    int rc = mr_source_open_fd(&src, fd);
    if (rc < 0)
        return open_failed(rc, "cannot read", err, errlen);
    return open_common(out, src, err, errlen);
}

void mr_reader_release_source(mr_reader_t *r)
{
    if (r->src != NULL) {
        mr_source_close(r->src);
        r->src = NULL;
        r->base = r->p = r->end = NULL;
        r->eof = 1;
        if (r->ended == MR_END_NONE && r->err == 0)
            set_error(r, -EBADF, "capture source closed");
    }
}

void mr_reader_close(mr_reader_t *r)
{
    if (r == NULL)
        return;
    mr_source_close(r->src);
    free(r->hdr.command_line);
    free(r->codes);
    free(r->frames);
    free(r->nodes);
    free(r->natives);
    for (size_t i = 0; i < r->n_threads; i++)
        free(r->threads[i].name);
    free(r->threads);
    threadmap_destroy(&r->thread_index);
    for (size_t i = 0; i < r->n_gens; i++)
        free(r->gens[i].maps);
    free(r->gens);
    free(r->procs);
    mr_hm_destroy(&r->strings);
    while (r->arena != NULL) {
        arena_chunk_t *next = r->arena->next;
        free(r->arena);
        r->arena = next;
    }
    free(r);
}

const mr_header_t *mr_reader_header(const mr_reader_t *r)
{
    return &r->hdr;
}

int mr_reader_compressed(const mr_reader_t *r)
{
    return r->src != NULL && mr_source_compressed(r->src);
}

void mr_reader_set_raw(mr_reader_t *r, int raw)
{
    r->raw = raw;
}

const char *mr_reader_error(const mr_reader_t *r)
{
    return r->errbuf;
}

mr_end_t mr_reader_end(const mr_reader_t *r)
{
    return r->ended;
}

uint64_t mr_reader_count(const mr_reader_t *r, unsigned type)
{
    return type < 16 ? r->counts[type] : 0;
}

uint64_t mr_reader_offset(const mr_reader_t *r)
{
    return r->p != NULL ? rec_offset(r, r->p) : r->base_off;
}

/* ---- threads ---------------------------------------------------------- */

static thread_entry_t *thread_find(const mr_reader_t *r, uint32_t tid)
{
    const thread_slot_t *s = threadmap_find(&r->thread_index, tid);
    return s != NULL ? &r->threads[s->item - 1] : NULL;
}

/* The entry of tid, added (without a name) if new; NULL when out of memory.
 * In a merged capture a thread belongs to the process it first ran in. */
static thread_entry_t *thread_get(mr_reader_t *r, uint32_t tid)
{
    thread_entry_t *t = thread_find(r, tid);
    if (t == NULL) {
        /* At most one new thread per record: item (index + 1) fits 32 bits
         * long before this. */
        if (r->n_threads >= UINT32_MAX - 1 ||
            mr_grow_array((void **)&r->threads, &r->cap_threads, r->n_threads + 1,
                          sizeof *r->threads) < 0 ||
            threadmap_reserve(&r->thread_index, 1) < 0)
            return NULL;
        *threadmap_claim(&r->thread_index, tid) =
            (thread_slot_t){.tid = tid, .item = (uint32_t)r->n_threads + 1};
        t = &r->threads[r->n_threads++];
        *t = (thread_entry_t){.tid = tid};
    }
    if (t->process == 0)
        t->process = r->process;
    return t;
}

static int thread_set_name(mr_reader_t *r, uint32_t tid, const uint8_t *name, size_t len,
                           thread_entry_t **out)
{
    thread_entry_t *t = thread_get(r, tid);
    char *copy = t != NULL ? malloc(len + 1) : NULL;
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, name, len);
    copy[len] = '\0';
    free(t->name);
    t->name = copy;
    t->len = (uint32_t)len;
    *out = t;
    return 0;
}

const char *mr_reader_thread_name(const mr_reader_t *r, uint32_t tid, size_t *len)
{
    const thread_entry_t *t = thread_find(r, tid);
    if (t == NULL || t->name == NULL)
        return NULL;
    if (len != NULL)
        *len = t->len;
    return t->name;
}

size_t mr_reader_n_processes(const mr_reader_t *r)
{
    return r->n_procs;
}

const mr_process_t *mr_reader_process(const mr_reader_t *r, uint32_t number)
{
    return number >= 1 && number <= r->n_procs ? &r->procs[number - 1].info : NULL;
}

uint32_t mr_reader_thread_process(const mr_reader_t *r, uint32_t tid)
{
    const thread_entry_t *t = thread_find(r, tid);
    return t != NULL ? t->process : 0;
}

/* ---- tables ----------------------------------------------------------- */

const mr_code_t *mr_reader_code(const mr_reader_t *r, uint64_t id)
{
    return id >= 1 && id <= r->n_codes ? &r->codes[id - 1] : NULL;
}

int mr_reader_frame(const mr_reader_t *r, uint64_t id, uint64_t *code, uint64_t *line)
{
    if (id < 1 || id > r->n_frames)
        return -ENOENT;
    *code = r->frames[id - 1].code;
    *line = r->frames[id - 1].line;
    return 0;
}

int mr_reader_node(const mr_reader_t *r, uint64_t id, uint64_t *parent, uint64_t *frame, int *entry)
{
    if (id < 1 || id > r->n_nodes)
        return -ENOENT;
    *parent = r->nodes[id - 1].parent;
    *frame = r->nodes[id - 1].frame;
    *entry = r->nodes[id - 1].entry;
    return 0;
}

int mr_reader_native_node(const mr_reader_t *r, uint64_t id, uint64_t *parent, uint64_t *ip)
{
    if (id < 1 || id > r->n_natives)
        return -ENOENT;
    *parent = r->natives[id - 1].parent;
    *ip = r->natives[id - 1].ip;
    return 0;
}

const mr_mapping_t *mr_reader_mappings(const mr_reader_t *r, uint64_t gen, size_t *count)
{
    for (size_t i = r->n_gens; i-- > 0;) {
        if (r->gens[i].gen == gen) {
            *count = r->gens[i].count;
            return r->gens[i].maps;
        }
    }
    *count = 0;
    return NULL;
}

const mr_trailer_t *mr_reader_trailer(const mr_reader_t *r)
{
    return r->has_trailer ? &r->trailer : NULL;
}

size_t mr_reader_stack(const mr_reader_t *r, uint64_t node, mr_pyframe_loc_t *out, size_t max)
{
    size_t n = 0;
    /* Parents are checked to precede their child when decoded, so ids fall
     * strictly on the way up and the walk ends. */
    while (node >= 1 && node <= r->n_nodes && n < max) {
        const node_entry_t *nd = &r->nodes[node - 1];
        const frame_entry_t *f = &r->frames[nd->frame - 1];
        const mr_code_t *c = &r->codes[f->code - 1];
        out[n].function = c->name;
        out[n].file = c->file;
        out[n].line = f->line;
        out[n].entry = nd->entry;
        n++;
        node = nd->parent;
    }
    return n;
}

uint64_t mr_reader_stack_top_frame(const mr_reader_t *r, uint64_t node)
{
    return node >= 1 && node <= r->n_nodes ? r->nodes[node - 1].frame : 0;
}

/* ---- records ---------------------------------------------------------- */

static int is_alloc_allocator(unsigned a)
{
    return a >= MR_PYMALLOC_FREE && a <= MR_MUNMAP && !mr_allocator_is_free(a);
}

/* Outcome of decoding one record. */
enum { DEC_END = 0, DEC_EVENT = 1, DEC_QUIET = 2 };

/* The data ended inside the record at rec: everything before it stands. */
static int truncated(mr_reader_t *r)
{
    r->ended = MR_END_TRUNCATED;
    return DEC_END;
}

/* A varint could not be decoded at q: cut off by the end of the data (then
 * the capture simply ends) or malformed (corrupt). */
static int bad_varint(mr_reader_t *r, const uint8_t *rec, const uint8_t *q)
{
    const uint8_t *e = r->end;
    size_t left = (size_t)(e - q);
    int all_continue = 1;
    for (size_t i = 0; i < left && i < MR_VARINT_MAX; i++)
        if (!(q[i] & 0x80))
            all_continue = 0;
    if (r->eof && left < MR_VARINT_MAX && all_continue)
        return truncated(r);
    return corrupt(r, rec, "malformed varint at byte %" PRIu64, rec_offset(r, q));
}

#define GETU(v)                                                                                    \
    do {                                                                                           \
        if (mr_get_uvarint(&q, r->end, &(v)) < 0)                                                  \
            return bad_varint(r, rec, q);                                                          \
    } while (0)
#define GETS(v)                                                                                    \
    do {                                                                                           \
        if (mr_get_svarint(&q, r->end, &(v)) < 0)                                                  \
            return bad_varint(r, rec, q);                                                          \
    } while (0)

/* Makes `more` bytes after *q available, keeping the record start. The window
 * may move: rec and q are rebased. 1 available, 0 the data ends first, <0. */
static int need(mr_reader_t *r, const uint8_t **rec, const uint8_t **q, size_t more)
{
    size_t slack = 4 * MR_VARINT_MAX;
    if ((size_t)(r->end - *q) >= more + slack || r->eof)
        return (size_t)(r->end - *q) >= more;
    size_t off = (size_t)(*q - *rec);
    int rc = ensure(r, off + more + slack);
    if (rc < 0)
        return rc;
    *rec = r->p;
    *q = r->p + off;
    return (size_t)(r->end - *q) >= more;
}

/* Reads "uvarint len + bytes" at q: *s points into the window. */
static int get_string(mr_reader_t *r, const uint8_t **rec, const uint8_t **q, const uint8_t **s,
                      size_t *len, const char *what)
{
    uint64_t n;
    if (mr_get_uvarint(q, r->end, &n) < 0)
        return bad_varint(r, *rec, *q) == DEC_END ? 0 : r->err;
    if (n > MR_MAX_STRING) {
        corrupt(r, *rec, "%s of %" PRIu64 " bytes (limit %u)", what, n, MR_MAX_STRING);
        return r->err;
    }
    int rc = need(r, rec, q, (size_t)n);
    if (rc < 0)
        return io_error(r, rc);
    if (rc == 0) {
        truncated(r);
        return 0;
    }
    *s = *q;
    *len = (size_t)n;
    *q += n;
    return 1;
}

#define GETSTR(s, len, what)                                                                       \
    do {                                                                                           \
        int rc_ = get_string(r, &rec, &q, &(s), &(len), what);                                     \
        if (rc_ <= 0)                                                                              \
            return rc_;                                                                            \
    } while (0)

static int cmp_mapping_lo(const void *pa, const void *pb)
{
    const mr_mapping_t *a = pa, *b = pb;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* A tag this reader does not know: a newer writer, or corruption. */
static int unknown_tag(mr_reader_t *r, const uint8_t *rec)
{
    return corrupt(r, rec, "unknown record tag 0x%02x", *rec);
}

/* ---- one decoder per record kind -----------------------------------------
 * Each gets the record's start (its tag byte) at rec, its body at q and the
 * tag's argument, checks the argument, every length and every id, and returns
 * DEC_* or a negative error (set in r). r->p moves past the record, and it is
 * counted, only once all of it decoded (MAPPINGS moves r->p entry by entry,
 * so that a record of any size fits the window). */

static int decode_mappings(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                           unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t gen, count;
    GETU(gen);
    GETU(count);
    if (gen == 0)
        return corrupt(r, rec, "MAPPINGS generation 0");
    if (count > MAX_MAPPINGS)
        return corrupt(r, rec, "MAPPINGS of %" PRIu64 " objects", count);
    mr_mapping_t *maps = NULL;
    size_t cap = 0, kept = 0;
    int rc;
    for (uint64_t i = 0; i < count; i++) {
        /* Entries are consumed one by one so that a record of any length fits
         * the window; a record cut off here still ends the data. */
        r->p = q;
        rec = q;
        if ((rc = ensure(r, REC_WINDOW)) < 0) {
            free(maps);
            return io_error(r, rc);
        }
        rec = q = r->p;
        const uint8_t *path, *bid;
        size_t path_len, bid_len;
        uint64_t bias, lo, hi;
        if ((rc = get_string(r, &rec, &q, &path, &path_len, "object path")) <= 0)
            goto out;
        if (mr_get_uvarint(&q, r->end, &bias) < 0 || mr_get_uvarint(&q, r->end, &lo) < 0 ||
            mr_get_uvarint(&q, r->end, &hi) < 0) {
            rc = bad_varint(r, rec, q);
            rc = rc == DEC_END ? 0 : r->err;
            goto out;
        }
        if ((rc = get_string(r, &rec, &q, &bid, &bid_len, "build id")) <= 0)
            goto out;
        if (hi <= lo)
            continue; /* covers no address: nothing to keep */
        const char *path_copy = intern(r, path, path_len);
        const char *bid_copy = path_copy ? intern(r, bid, bid_len) : NULL;
        if (bid_copy == NULL || mr_grow_array((void **)&maps, &cap, kept + 1, sizeof *maps) < 0) {
            rc = set_error(r, -ENOMEM, "out of memory");
            goto out;
        }
        maps[kept++] = (mr_mapping_t){.path = path_copy,
                                      .bias = bias,
                                      .lo = lo,
                                      .hi = hi,
                                      .build_id = (const uint8_t *)bid_copy,
                                      .path_len = (uint32_t)path_len,
                                      .build_id_len = (uint32_t)bid_len};
    }
    if (mr_grow_array((void **)&r->gens, &r->cap_gens, r->n_gens + 1, sizeof *r->gens) < 0) {
        rc = set_error(r, -ENOMEM, "out of memory");
        goto out;
    }
    /* By start address, for lookups by bisection (mr_reader_mappings). */
    if (kept > 1)
        qsort(maps, kept, sizeof *maps, cmp_mapping_lo);
    if (kept < cap && kept > 0) { /* as many as kept, not the doubled capacity */
        mr_mapping_t *fit = realloc(maps, kept * sizeof *maps);
        if (fit != NULL)
            maps = fit;
    }
    r->gens[r->n_gens++] = (mapping_gen_t){.gen = gen, .maps = maps, .count = kept};
    r->generation = gen;
    if (r->process != 0)
        r->procs[r->process - 1].generation = gen;
    r->p = q;
    r->counts[MR_REC_MAPPINGS]++;
    ev->id = gen;
    ev->a = count;
    return r->raw ? DEC_EVENT : DEC_QUIET;
out:
    free(maps);
    return rc;
}

static int decode_zero(mr_reader_t *r, const uint8_t *rec, unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    r->ended = MR_END_ZERO;
    return DEC_END;
}

static int decode_alloc(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                        unsigned arg)
{
    if (!is_alloc_allocator(arg))
        return unknown_tag(r, rec);
    int64_t daddr, dstack, dnative = 0;
    uint64_t size;
    GETS(daddr);
    GETU(size);
    GETS(dstack);
    if (r->hdr.flags & MR_FLAG_NATIVE)
        GETS(dnative);
    uint64_t stack = r->prev_stack + (uint64_t)dstack;
    uint64_t native = r->prev_native + (uint64_t)dnative;
    if (stack > r->n_nodes)
        return corrupt(r, rec, "ALLOC with undefined stack %" PRIu64, stack);
    if (native > r->n_natives)
        return corrupt(r, rec, "ALLOC with undefined native stack %" PRIu64, native);
    r->prev_addr += (uint64_t)daddr;
    r->prev_stack = stack;
    r->prev_native = native;
    r->p = q;
    r->counts[MR_REC_ALLOC]++;
    ev->tid = r->tid;
    ev->allocator = arg;
    ev->addr = r->prev_addr;
    ev->size = size;
    ev->stack = stack;
    ev->native = native;
    ev->generation = r->generation;
    return DEC_EVENT;
}

static int decode_free(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                       unsigned arg)
{
    if (!mr_allocator_is_free(arg))
        return unknown_tag(r, rec);
    int64_t daddr;
    uint64_t len = 0;
    GETS(daddr);
    if (arg == MR_MUNMAP)
        GETU(len);
    r->prev_addr += (uint64_t)daddr;
    r->p = q;
    r->counts[MR_REC_FREE]++;
    ev->tid = r->tid;
    ev->allocator = arg;
    ev->addr = r->prev_addr;
    ev->size = len;
    ev->stack = ev->native = 0;
    ev->generation = r->generation;
    return DEC_EVENT;
}

static int decode_thread(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                         unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t tid;
    GETU(tid);
    if (tid > UINT32_MAX)
        return corrupt(r, rec, "thread id %" PRIu64 " out of range", tid);
    if (r->process != 0 && thread_get(r, (uint32_t)tid) == NULL)
        return set_error(r, -ENOMEM, "out of memory");
    r->tid = (uint32_t)tid;
    r->p = q;
    r->counts[MR_REC_THREAD]++;
    ev->tid = r->tid;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_code(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                       unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    const uint8_t *name, *file;
    size_t name_len, file_len;
    uint64_t first_line;
    GETSTR(name, name_len, "function name");
    /* Reading the file name may move the window: keep the name's offset. */
    size_t name_off = (size_t)(name - rec);
    GETSTR(file, file_len, "file name");
    GETU(first_line);
    name = rec + name_off;
    if (r->n_codes >= MAX_TABLE_IDS)
        return corrupt(r, rec, "too many CODE records");
    if (mr_grow_array((void **)&r->codes, &r->cap_codes, r->n_codes + 1, sizeof *r->codes) < 0)
        return set_error(r, -ENOMEM, "out of memory");
    char *n = arena_strdup(r, name, name_len);
    char *f = n ? arena_strdup(r, file, file_len) : NULL;
    if (f == NULL)
        return set_error(r, -ENOMEM, "out of memory");
    r->codes[r->n_codes++] = (mr_code_t){.name = n,
                                         .file = f,
                                         .name_len = (uint32_t)name_len,
                                         .file_len = (uint32_t)file_len,
                                         .first_line = first_line};
    r->p = q;
    r->counts[MR_REC_CODE]++;
    ev->id = r->n_codes;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_frame(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                        unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t code, line;
    GETU(code);
    GETU(line);
    if (code < 1 || code > r->n_codes)
        return corrupt(r, rec, "FRAME with undefined code %" PRIu64, code);
    if (r->n_frames >= MAX_TABLE_IDS / 2) /* ids are kept in 31 bits in nodes */
        return corrupt(r, rec, "too many FRAME records");
    if (mr_grow_array((void **)&r->frames, &r->cap_frames, r->n_frames + 1, sizeof *r->frames) < 0)
        return set_error(r, -ENOMEM, "out of memory");
    r->frames[r->n_frames++] = (frame_entry_t){.line = line, .code = (uint32_t)code};
    r->p = q;
    r->counts[MR_REC_FRAME]++;
    ev->id = r->n_frames;
    ev->a = code;
    ev->b = line;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_node(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                       unsigned arg)
{
    if (arg & ~MR_NODE_ENTRY)
        return unknown_tag(r, rec);
    uint64_t parent, frame;
    GETU(parent);
    GETU(frame);
    if (parent > r->n_nodes)
        return corrupt(r, rec, "NODE with undefined parent %" PRIu64, parent);
    if (frame < 1 || frame > r->n_frames)
        return corrupt(r, rec, "NODE with undefined frame %" PRIu64, frame);
    if (r->n_nodes >= MAX_TABLE_IDS)
        return corrupt(r, rec, "too many NODE records");
    if (mr_grow_array((void **)&r->nodes, &r->cap_nodes, r->n_nodes + 1, sizeof *r->nodes) < 0)
        return set_error(r, -ENOMEM, "out of memory");
    r->nodes[r->n_nodes++] = (node_entry_t){
        .parent = (uint32_t)parent, .frame = (uint32_t)frame, .entry = (arg & MR_NODE_ENTRY) != 0};
    r->p = q;
    r->counts[MR_REC_NODE]++;
    ev->id = r->n_nodes;
    ev->a = parent;
    ev->b = frame;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_thread_name(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                              unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t tid;
    const uint8_t *name;
    size_t len;
    GETU(tid);
    if (tid > UINT32_MAX)
        return corrupt(r, rec, "thread id %" PRIu64 " out of range", tid);
    GETSTR(name, len, "thread name");
    thread_entry_t *t;
    if (thread_set_name(r, (uint32_t)tid, name, len, &t) < 0)
        return set_error(r, -ENOMEM, "out of memory");
    r->p = q;
    r->counts[MR_REC_THREAD_NAME]++;
    ev->tid = (uint32_t)tid;
    ev->str = t->name;
    ev->str_len = t->len;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_memory(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                         unsigned arg)
{
    if (arg & ~MR_MEMORY_KNOWN)
        return unknown_tag(r, rec);
    uint64_t ms, rss, heap = 0, anon = 0, file = 0, shmem = 0, mapped = 0;
    GETU(ms);
    GETU(rss);
    if (arg & MR_MEMORY_HAS_HEAP)
        GETU(heap);
    if (arg & MR_MEMORY_HAS_SPLIT) {
        GETU(anon);
        GETU(file);
        GETU(shmem);
        GETU(mapped);
    }
    r->p = q;
    r->counts[MR_REC_MEMORY]++;
    ev->ms = ms;
    ev->rss = rss;
    ev->heap = heap;
    ev->has_heap = (arg & MR_MEMORY_HAS_HEAP) != 0;
    ev->split = (mr_mem_split_t){.anon = anon, .file = file, .shmem = shmem, .mapped = mapped};
    ev->has_split = (arg & MR_MEMORY_HAS_SPLIT) != 0;
    return DEC_EVENT;
}

static int decode_native_node(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                              unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t parent, ip;
    GETU(parent);
    GETU(ip);
    if (parent > r->n_natives)
        return corrupt(r, rec, "NATIVE_NODE with undefined parent %" PRIu64, parent);
    if (r->n_natives >= MAX_TABLE_IDS)
        return corrupt(r, rec, "too many NATIVE_NODE records");
    if (mr_grow_array((void **)&r->natives, &r->cap_natives, r->n_natives + 1, sizeof *r->natives) <
        0)
        return set_error(r, -ENOMEM, "out of memory");
    r->natives[r->n_natives++] = (native_entry_t){.ip = ip, .parent = (uint32_t)parent};
    r->p = q;
    r->counts[MR_REC_NATIVE_NODE]++;
    ev->id = r->n_natives;
    ev->a = parent;
    ev->b = ip;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_agg(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                      unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t tid, allocator, stack, native, pn, pb, ln, lb;
    GETU(tid);
    GETU(allocator);
    GETU(stack);
    GETU(native);
    GETU(pn);
    GETU(pb);
    GETU(ln);
    GETU(lb);
    if (tid > UINT32_MAX)
        return corrupt(r, rec, "thread id %" PRIu64 " out of range", tid);
    if (allocator > 15 || !is_alloc_allocator((unsigned)allocator))
        return corrupt(r, rec, "AGG with allocator %" PRIu64, allocator);
    if (stack > r->n_nodes)
        return corrupt(r, rec, "AGG with undefined stack %" PRIu64, stack);
    if (native > r->n_natives)
        return corrupt(r, rec, "AGG with undefined native stack %" PRIu64, native);
    r->p = q;
    r->counts[MR_REC_AGG]++;
    ev->tid = (uint32_t)tid;
    ev->allocator = (unsigned)allocator;
    ev->stack = stack;
    ev->native = native;
    ev->generation = r->generation;
    ev->peak_n = pn;
    ev->peak_bytes = pb;
    ev->leak_n = ln;
    ev->leak_bytes = lb;
    return DEC_EVENT;
}

static int decode_pad(mr_reader_t *r, const uint8_t *rec, const uint8_t *q, unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t n;
    GETU(n);
    if (n > MR_MAX_STRING)
        return corrupt(r, rec, "PAD of %" PRIu64 " bytes (limit %u)", n, MR_MAX_STRING);
    int rc = need(r, &rec, &q, (size_t)n);
    if (rc < 0)
        return io_error(r, rc);
    if (rc == 0)
        return truncated(r);
    r->p = q + n;
    r->counts[MR_REC_PAD]++;
    return DEC_QUIET;
}

static int decode_trailer(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                          unsigned arg)
{
    if (arg != 0)
        return unknown_tag(r, rec);
    uint64_t ms, total, peak, flags;
    GETU(ms);
    GETU(total);
    GETU(peak);
    GETU(flags);
    r->trailer = (mr_trailer_t){.ms = ms, .total_allocs = total, .peak = peak, .flags = flags};
    r->has_trailer = 1;
    r->p = q;
    r->counts[MR_REC_TRAILER]++;
    r->ended = MR_END_TRAILER; /* nothing follows a trailer */
    ev->ms = ms;
    ev->a = total;
    ev->b = peak;
    ev->flags = flags;
    return DEC_EVENT;
}

/* EXT: kinds this reader knows are decoded from the body; others skipped.
 * Every body is checked to lie within the record. */
static int decode_ext(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                      unsigned arg)
{
    if (arg == 0)
        return unknown_tag(r, rec);
    uint64_t n;
    GETU(n);
    if (n > MR_MAX_STRING)
        return corrupt(r, rec, "EXT of %" PRIu64 " bytes (limit %u)", n, MR_MAX_STRING);
    int rc = need(r, &rec, &q, (size_t)n);
    if (rc < 0)
        return io_error(r, rc);
    if (rc == 0)
        return truncated(r);
    const uint8_t *body = q, *end = q + n;
    ev->id = arg;
    switch (arg) {
    case MR_EXT_SAMPLING: {
        uint64_t every;
        if (!(r->hdr.flags & MR_FLAG_SAMPLED) || r->counts[MR_REC_EXT] != 0 ||
            rec_offset(r, rec) != MR_HEADER_SIZE + r->hdr.command_line_len)
            return corrupt(r, rec, "EXT SAMPLING not first in a sampled capture");
        if (mr_get_uvarint(&body, end, &every) < 0 || every == 0)
            return corrupt(r, rec, "EXT SAMPLING without an interval");
        r->hdr.sample_every = every;
        ev->a = every;
        break;
    }
    default:
        break;
    }
    r->p = end;
    r->counts[MR_REC_EXT]++;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

static int decode_process(mr_reader_t *r, mr_event_t *ev, const uint8_t *rec, const uint8_t *q,
                          unsigned arg)
{
    if (!(r->hdr.flags & MR_FLAG_MERGED) ||
        (arg != 0 && arg != MR_PROCESS_DEFINE && arg != MR_PROCESS_EXIT))
        return unknown_tag(r, rec);
    uint64_t number;
    if (arg == MR_PROCESS_EXIT) {
        GETU(number);
        if (number < 1 || number > r->n_procs)
            return corrupt(r, rec, "PROCESS %" PRIu64 " not defined", number);
        r->p = q;
        r->counts[MR_REC_PROCESS]++;
        ev->id = number;
        return DEC_EVENT; /* the passes take the process's blocks off the heap */
    }
    if (arg & MR_PROCESS_DEFINE) {
        uint64_t pid, parent, start, hexversion;
        const uint8_t *cmd;
        size_t cmd_len;
        GETU(pid);
        GETU(parent);
        GETU(start);
        GETU(hexversion);
        GETSTR(cmd, cmd_len, "command line");
        if (pid > UINT32_MAX || parent > UINT32_MAX || hexversion > UINT32_MAX)
            return corrupt(r, rec, "PROCESS field out of range");
        if (r->n_procs >= UINT32_MAX - 1)
            return corrupt(r, rec, "too many PROCESS records");
        char *copy = arena_strdup(r, cmd, cmd_len);
        if (copy == NULL ||
            mr_grow_array((void **)&r->procs, &r->cap_procs, r->n_procs + 1, sizeof *r->procs) < 0)
            return set_error(r, -ENOMEM, "out of memory");
        number = r->n_procs + 1;
        r->procs[r->n_procs++] = (process_entry_t){.info = {.number = (uint32_t)number,
                                                            .pid = (uint32_t)pid,
                                                            .parent_pid = (uint32_t)parent,
                                                            .start_offset_ms = start,
                                                            .py_hexversion = (uint32_t)hexversion,
                                                            .command_line = copy,
                                                            .command_line_len = cmd_len}};
    } else {
        GETU(number);
        if (number < 1 || number > r->n_procs)
            return corrupt(r, rec, "PROCESS %" PRIu64 " not defined", number);
    }
    r->process = (uint32_t)number;
    r->generation = r->procs[number - 1].generation;
    r->tid = 0;
    r->p = q;
    r->counts[MR_REC_PROCESS]++;
    ev->id = number;
    return r->raw ? DEC_EVENT : DEC_QUIET;
}

/* Decodes the record at r->p: dispatches on its kind. */
static int decode(mr_reader_t *r, mr_event_t *ev)
{
    const uint8_t *rec = r->p, *q = rec + 1;
    unsigned type = MR_TAG_TYPE(*rec), arg = MR_TAG_ARG(*rec);
    ev->type = type;
    ev->arg = arg;
    ev->offset = rec_offset(r, rec);

    switch (type) {
    case MR_REC_ZERO:
        return decode_zero(r, rec, arg);
    case MR_REC_ALLOC:
        return decode_alloc(r, ev, rec, q, arg);
    case MR_REC_FREE:
        return decode_free(r, ev, rec, q, arg);
    case MR_REC_THREAD:
        return decode_thread(r, ev, rec, q, arg);
    case MR_REC_CODE:
        return decode_code(r, ev, rec, q, arg);
    case MR_REC_FRAME:
        return decode_frame(r, ev, rec, q, arg);
    case MR_REC_NODE:
        return decode_node(r, ev, rec, q, arg);
    case MR_REC_THREAD_NAME:
        return decode_thread_name(r, ev, rec, q, arg);
    case MR_REC_MEMORY:
        return decode_memory(r, ev, rec, q, arg);
    case MR_REC_NATIVE_NODE:
        return decode_native_node(r, ev, rec, q, arg);
    case MR_REC_MAPPINGS:
        return decode_mappings(r, ev, rec, q, arg);
    case MR_REC_AGG:
        return decode_agg(r, ev, rec, q, arg);
    case MR_REC_PAD:
        return decode_pad(r, rec, q, arg);
    case MR_REC_TRAILER:
        return decode_trailer(r, ev, rec, q, arg);
    case MR_REC_PROCESS:
        return decode_process(r, ev, rec, q, arg);
    case MR_REC_EXT:
        return decode_ext(r, ev, rec, q, arg);
    default:
        return unknown_tag(r, rec);
    }
}

int mr_reader_next(mr_reader_t *r, mr_event_t *ev)
{
    for (;;) {
        if (r->err)
            return r->err;
        if (r->ended != MR_END_NONE)
            return 0;
        int rc = ensure(r, REC_WINDOW);
        if (rc < 0)
            return io_error(r, rc);
        if (r->p == r->end) {
            r->ended = MR_END_EOF;
            return 0;
        }
        rc = decode(r, ev);
        if (rc < 0)
            return rc;
        if (rc == DEC_EVENT)
            return 1;
        if (rc == DEC_END)
            return r->err ? r->err : 0;
    }
}

/* ---- text dump -------------------------------------------------------- */

static const char *const allocator_names[16] = {
    "?",
    "pymalloc_free",
    "pymalloc_malloc",
    "pymalloc_calloc",
    "pymalloc_realloc",
    "free",
    "malloc",
    "realloc",
    "calloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mmap",
    "munmap",
};

/* Appends formatted text to a buffer, counting what did not fit. */
typedef struct out {
    char *buf;
    size_t len, used;
} out_t;

static void outf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->used < o->len ? o->len - o->used : 0;
    int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->used += (size_t)n;
}

/* Strings from the tracked program are quoted with C escapes, so a name
 * holding a newline cannot forge a record line. */
static void outq(out_t *o, const char *s, size_t n)
{
    outf(o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            outf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            outf(o, "\\x%02x", c);
        else
            outf(o, "%c", c);
    }
    outf(o, "\"");
}

int mr_reader_format_header(const mr_reader_t *r, char *buf, size_t len)
{
    out_t o = {buf, len, 0};
    if (len > 0)
        buf[0] = '\0';
    const mr_header_t *h = &r->hdr;
    outf(&o,
         "HEADER version=%u flags=0x%x python_allocator=%u pid=%" PRIu32 " parent_pid=%" PRIu32
         " main_tid=%" PRIu32 " start_ms=%" PRIu64 " python=0x%08" PRIx32 " interval_ms=%" PRIu32
         " compressed=%d command_line=",
         h->version, h->flags, h->python_allocator, h->pid, h->parent_pid, h->main_tid, h->start_ms,
         h->py_hexversion, h->interval_ms, mr_reader_compressed(r));
    outq(&o, h->command_line ? h->command_line : "", h->command_line_len);
    if (h->flags & MR_FLAG_SAMPLED)
        outf(&o, " sample_every=%" PRIu64, h->sample_every);
    return (int)o.used;
}

int mr_reader_format_event(const mr_reader_t *r, const mr_event_t *ev, char *buf, size_t len)
{
    out_t o = {buf, len, 0};
    if (len > 0)
        buf[0] = '\0';
    const char *alloc = allocator_names[ev->allocator & 15];
    switch (ev->type) {
    case MR_REC_ALLOC:
        outf(&o,
             "ALLOC tid=%" PRIu32 " allocator=%s address=0x%" PRIx64 " size=%" PRIu64
             " stack=%" PRIu64,
             ev->tid, alloc, ev->addr, ev->size, ev->stack);
        if (r->hdr.flags & MR_FLAG_NATIVE)
            outf(&o, " native=%" PRIu64 " generation=%" PRIu64, ev->native, ev->generation);
        break;
    case MR_REC_FREE:
        outf(&o, "FREE tid=%" PRIu32 " allocator=%s address=0x%" PRIx64, ev->tid, alloc, ev->addr);
        if (ev->allocator == MR_MUNMAP)
            outf(&o, " length=%" PRIu64, ev->size);
        break;
    case MR_REC_THREAD:
        outf(&o, "THREAD tid=%" PRIu32, ev->tid);
        break;
    case MR_REC_CODE: {
        const mr_code_t *c = mr_reader_code(r, ev->id);
        outf(&o, "CODE id=%" PRIu64 " function=", ev->id);
        outq(&o, c->name, c->name_len);
        outf(&o, " file=");
        outq(&o, c->file, c->file_len);
        outf(&o, " first_line=%" PRIu64, c->first_line);
        break;
    }
    case MR_REC_FRAME:
        outf(&o, "FRAME id=%" PRIu64 " code=%" PRIu64 " line=%" PRIu64, ev->id, ev->a, ev->b);
        break;
    case MR_REC_NODE:
        outf(&o, "NODE id=%" PRIu64 " parent=%" PRIu64 " frame=%" PRIu64 " entry=%d", ev->id, ev->a,
             ev->b, (ev->arg & MR_NODE_ENTRY) != 0);
        break;
    case MR_REC_THREAD_NAME:
        outf(&o, "THREAD_NAME tid=%" PRIu32 " name=", ev->tid);
        outq(&o, ev->str, ev->str_len);
        break;
    case MR_REC_MEMORY:
        outf(&o, "MEMORY ms=%" PRIu64 " rss=%" PRIu64, ev->ms, ev->rss);
        if (ev->has_heap)
            outf(&o, " heap=%" PRIu64, ev->heap);
        if (ev->has_split)
            outf(&o, " anon=%" PRIu64 " file=%" PRIu64 " shmem=%" PRIu64 " mapped=%" PRIu64,
                 ev->split.anon, ev->split.file, ev->split.shmem, ev->split.mapped);
        break;
    case MR_REC_NATIVE_NODE:
        outf(&o, "NATIVE_NODE id=%" PRIu64 " parent=%" PRIu64 " ip=0x%" PRIx64, ev->id, ev->a,
             ev->b);
        break;
    case MR_REC_MAPPINGS: {
        size_t n;
        const mr_mapping_t *m = mr_reader_mappings(r, ev->id, &n);
        outf(&o, "MAPPINGS generation=%" PRIu64 " count=%zu", ev->id, n);
        for (size_t i = 0; i < n; i++) {
            outf(&o, " [path=");
            outq(&o, m[i].path, m[i].path_len);
            outf(&o, " bias=0x%" PRIx64 " lo=0x%" PRIx64 " hi=0x%" PRIx64 " build_id=", m[i].bias,
                 m[i].lo, m[i].hi);
            for (uint32_t j = 0; j < m[i].build_id_len; j++)
                outf(&o, "%02x", m[i].build_id[j]);
            outf(&o, "]");
        }
        break;
    }
    case MR_REC_AGG:
        outf(&o,
             "AGG tid=%" PRIu32 " allocator=%s stack=%" PRIu64 " native=%" PRIu64
             " peak_allocations=%" PRIu64 " peak_bytes=%" PRIu64 " leaked_allocations=%" PRIu64
             " leaked_bytes=%" PRIu64,
             ev->tid, alloc, ev->stack, ev->native, ev->peak_n, ev->peak_bytes, ev->leak_n,
             ev->leak_bytes);
        break;
    case MR_REC_TRAILER:
        outf(&o,
             "TRAILER ms=%" PRIu64 " total_allocations=%" PRIu64 " peak_bytes=%" PRIu64
             " flags=0x%" PRIx64,
             ev->ms, ev->a, ev->b, ev->flags);
        break;
    case MR_REC_EXT:
        outf(&o, "EXT kind=%" PRIu64, ev->id);
        if (ev->id == MR_EXT_SAMPLING)
            outf(&o, " sampling every=%" PRIu64, ev->a);
        break;
    case MR_REC_PROCESS: {
        const mr_process_t *p = mr_reader_process(r, (uint32_t)ev->id);
        outf(&o, "PROCESS number=%" PRIu64, ev->id);
        if (ev->arg & MR_PROCESS_EXIT)
            outf(&o, " exit");
        if (ev->arg & MR_PROCESS_DEFINE) {
            outf(&o,
                 " pid=%" PRIu32 " parent_pid=%" PRIu32 " start_offset_ms=%" PRIu64
                 " python=0x%08" PRIx32 " command_line=",
                 p->pid, p->parent_pid, p->start_offset_ms, p->py_hexversion);
            outq(&o, p->command_line, p->command_line_len);
        }
        break;
    }
    default:
        outf(&o, "UNKNOWN type=%u", ev->type);
        break;
    }
    return (int)o.used;
}
