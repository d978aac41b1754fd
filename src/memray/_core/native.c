/* native.c: unwinding (libunwind), the native IP trie, and the loaded-object
 * map. Runs inside hooks: no stdio, no Python, memory only from this
 * extension's own (unpatched) malloc while the guard is held. */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include "native.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "hashmap.h"
#include "util.h"

/* This extension's own text: frames inside it (the hooks, the tracker) are
 * the profiler's, not the program's. Set once by mr_native_init. */
static uintptr_t self_start, self_end;

/* The native trie: (parent id, ip) -> NATIVE_NODE id, keys compared whole. */
typedef struct node_key {
    uint64_t parent;
    uint64_t ip;
} node_key_t;

typedef struct node_slot {
    node_key_t key;
    uint64_t id; /* 0 = empty (ids start at 1) */
} node_slot_t;

static inline uint64_t node_key_hash(const node_key_t *k)
{
    return mr_hash64(k->ip ^ mr_hash64(k->parent));
}

static inline uint64_t node_slot_hash(const node_slot_t *s)
{
    return node_key_hash(&s->key);
}

static inline int node_slot_match(const node_slot_t *s, const node_key_t *k)
{
    return s->key.ip == k->ip && s->key.parent == k->parent;
}

static inline int node_slot_empty(const node_slot_t *s)
{
    return s->id == 0;
}

static inline void node_slot_clear(node_slot_t *s)
{
    s->id = 0;
}

MR_HASHMAP_DEFINE(nodemap, node_slot_t, const node_key_t *, node_key_hash, node_slot_hash,
                  node_slot_match, node_slot_empty, node_slot_clear, 50)

static nodemap_t node_ids;          /* writer lock */
static uint64_t generation_written; /* MAPPINGS generation, writer lock */
/* The main program's path: dl_iterate_phdr names it "". Set by init. */
static char exe_path[4096];

static int find_self(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    uintptr_t me = (uintptr_t)&find_self;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (me >= start && me < start + ph->p_memsz) {
            self_start = start;
            self_end = start + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

int mr_native_init(void)
{
    if (self_end == 0)
        dl_iterate_phdr(find_self, NULL);
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    return 0;
}

/* Unwinds into c->walk, growing it until the whole stack fits. Returns the
 * frame count. */
static uint32_t unwind(mr_native_cache_t *c)
{
    for (;;) {
        if (c->walk_cap == 0) {
            c->walk = malloc(MR_NATIVE_INITIAL_DEPTH * sizeof *c->walk);
            if (c->walk == NULL)
                return 0;
            c->walk_cap = MR_NATIVE_INITIAL_DEPTH;
        }
        int got = unw_backtrace((void **)c->walk, (int)c->walk_cap);
        if (got <= 0)
            return 0;
        /* A full buffer may have cut the outer end: retry with more room (a
         * deep stack's cost, paid on that allocation only). */
        if ((uint32_t)got < c->walk_cap || c->walk_cap >= MR_NATIVE_MAX_DEPTH)
            return (uint32_t)got;
        uintptr_t *walk = realloc(c->walk, 2 * (size_t)c->walk_cap * sizeof *walk);
        if (walk == NULL)
            return (uint32_t)got;
        c->walk = walk;
        c->walk_cap *= 2;
    }
}

void mr_native_walk(mr_native_cache_t *c, uint64_t generation)
{
    if (c->generation != generation) {
        c->n = 0;
        c->generation = generation;
    }
    uint32_t n = unwind(c);
    /* Drop the profiler's frames at the inner end. */
    uint32_t skip = 0;
    while (skip < n && c->walk[skip] >= self_start && c->walk[skip] < self_end)
        skip++;
    if (skip > 0) {
        memmove(c->walk, c->walk + skip, (n - skip) * sizeof c->walk[0]);
        n -= skip;
    }
    c->walk_n = n;
    uint32_t m = n < c->n ? n : c->n, k = 0;
    while (k < m && c->walk[n - 1 - k] == c->ips[k])
        k++;
    c->matched = k;
}

static int intern(mr_writer_t *w, uint64_t parent, uintptr_t ip, uint64_t *id)
{
    node_key_t key = {.parent = parent, .ip = (uint64_t)ip};
    const node_slot_t *s = nodemap_find(&node_ids, &key);
    if (s != NULL) {
        *id = s->id;
        return 0;
    }
    /* Room first: a node written is then always remembered. */
    int rc = nodemap_reserve(&node_ids, 1);
    if (rc < 0 || (rc = mr_writer_native_node(w, parent, ip, id)) < 0)
        return rc;
    *nodemap_claim(&node_ids, &key) = (node_slot_t){.key = key, .id = *id};
    return 0;
}

int mr_native_resolve_locked(mr_native_cache_t *c, mr_writer_t *w, uint64_t *node)
{
    MR_ASSERT(mr_tracker_lock_held());
    uint32_t n = c->walk_n, k = c->matched;
    if (k == n) {
        *node = n ? c->nodes[n - 1] : 0;
        return 0;
    }
    if (n > c->cap) {
        uint32_t cap = c->cap ? c->cap : MR_NATIVE_INITIAL_DEPTH;
        while (cap < n)
            cap *= 2;
        uintptr_t *ips = realloc(c->ips, cap * sizeof *ips);
        if (ips == NULL)
            return -ENOMEM;
        c->ips = ips;
        uint64_t *nodes = realloc(c->nodes, cap * sizeof *nodes);
        if (nodes == NULL)
            return -ENOMEM;
        c->nodes = nodes;
        c->cap = cap;
    }
    uint64_t parent = k ? c->nodes[k - 1] : 0;
    c->n = k;
    for (uint32_t i = k; i < n; i++) {
        uintptr_t ip = c->walk[n - 1 - i];
        int rc = intern(w, parent, ip, &parent);
        if (rc < 0)
            return rc;
        c->ips[i] = ip;
        c->nodes[i] = parent;
        c->n = i + 1;
    }
    *node = parent;
    return 0;
}

void mr_native_cache_free(mr_native_cache_t *c)
{
    free(c->walk);
    free(c->ips);
    free(c->nodes);
    c->walk = NULL;
    c->ips = NULL;
    c->nodes = NULL;
    c->walk_n = c->walk_cap = 0;
    c->n = c->cap = 0;
}

void mr_native_reset_locked(void)
{
    MR_ASSERT(mr_tracker_lock_held());
    nodemap_destroy(&node_ids);
    generation_written = 0;
}

/* The loaded objects being collected. Paths and build-ids are copied: the
 * loader's strings may go away with a concurrent dlclose. */
typedef struct map_list {
    mr_mapping_entry_t *entries;
    size_t n, cap;
    int err;
} map_list_t;

/* The GNU build-id note of an object, if its PT_NOTE segments hold one. */
static const uint8_t *build_id(const struct dl_phdr_info *info, size_t *len)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof *nh;
            const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
            const uint8_t *next = desc + ((nh->n_descsz + 3) & ~3u);
            if (next > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                *len = nh->n_descsz;
                return desc;
            }
            p = next;
        }
    }
    *len = 0;
    return NULL;
}

/* The file mapped at addr, from /proc/self/maps: 0, or -errno (-ENOENT when
 * no file mapping holds addr). Runs outside the hot path (a dlopen). */
static int path_of_mapping(uintptr_t addr, char *out, size_t size)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Lines are read whole into buf; a line longer than buf (a path near
     * PATH_MAX) is skipped. */
    char buf[8192];
    size_t have = 0;
    int rc = -ENOENT, eof = 0;
    while (rc == -ENOENT && !(eof && have == 0)) {
        if (!eof && have < sizeof buf) {
            ssize_t got = read(fd, buf + have, sizeof buf - have);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                rc = -errno;
                break;
            }
            if (got == 0)
                eof = 1;
            have += (size_t)got;
        }
        char *nl = memchr(buf, '\n', have);
        if (nl == NULL && !eof && have < sizeof buf)
            continue;
        size_t len = nl ? (size_t)(nl - buf) : have;
        if (nl != NULL || eof) {
            /* "start-end perms offset dev inode   path" */
            char *line = buf, *end = buf + len, *p;
            uintptr_t lo = strtoull(line, &p, 16), hi = 0;
            if (p < end && *p == '-')
                hi = strtoull(p + 1, &p, 16);
            if (addr >= lo && addr < hi) {
                for (int field = 0; field < 4 && p < end; field++) {
                    while (p < end && *p == ' ')
                        p++;
                    while (p < end && *p != ' ')
                        p++;
                }
                while (p < end && *p == ' ')
                    p++;
                size_t plen = (size_t)(end - p);
                /* A file, not [heap], [vdso] or an anonymous mapping. */
                if (plen > 0 && plen < size && *p == '/') {
                    memcpy(out, p, plen);
                    out[plen] = '\0';
                    rc = 0;
                }
            }
            size_t used = nl ? len + 1 : have;
            memmove(buf, buf + used, have - used);
            have -= used;
        } else {
            have = 0; /* an overlong line: drop what we have of it */
            char c;
            ssize_t got;
            while ((got = read(fd, &c, 1)) == 1 && c != '\n')
                ;
            if (got <= 0)
                eof = 1;
        }
    }
    close(fd);
    return rc;
}

static int add_mapping(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    map_list_t *l = data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t s = info->dlpi_addr + ph->p_vaddr;
        if (s < lo)
            lo = s;
        if (s + ph->p_memsz > hi)
            hi = s + ph->p_memsz;
    }
    if (hi == 0)
        return 0;
    const char *path = info->dlpi_name ? info->dlpi_name : "";
    if (path[0] == '\0' && l->n == 0)
        path = exe_path;
    /* dlopen("./libx.so") names the object as given: relative to a working
     * directory that may have changed since, and useless to a report run
     * elsewhere. The kernel's map of the process knows the file. (Names
     * without a slash, as the vdso's, are no file.) */
    char resolved[4096];
    if (path[0] != '/' && strchr(path, '/') != NULL &&
        path_of_mapping(lo, resolved, sizeof resolved) == 0)
        path = resolved;
    size_t plen = strnlen(path, 4096), blen;
    const uint8_t *bid = build_id(info, &blen);
    if (blen > 64)
        blen = 64;
    if (mr_grow_array((void **)&l->entries, &l->cap, l->n + 1, sizeof *l->entries) < 0) {
        l->err = -ENOMEM;
        return 1;
    }
    char *copy = malloc(plen + blen + 1);
    if (copy == NULL) {
        l->err = -ENOMEM;
        return 1;
    }
    memcpy(copy, path, plen);
    copy[plen] = '\0';
    if (blen)
        memcpy(copy + plen + 1, bid, blen);
    l->entries[l->n++] = (mr_mapping_entry_t){
        copy, plen, info->dlpi_addr, lo, hi, (const uint8_t *)copy + plen + 1, blen};
    return 0;
}

int mr_native_write_mappings_locked(mr_writer_t *w)
{
    MR_ASSERT(mr_tracker_lock_held());
    map_list_t l = {0};
    dl_iterate_phdr(add_mapping, &l);
    int rc = l.err;
    if (rc == 0)
        rc = mr_writer_mappings(w, generation_written + 1, l.entries, l.n);
    if (rc == 0)
        generation_written++;
    for (size_t i = 0; i < l.n; i++)
        free((char *)l.entries[i].path);
    free(l.entries);
    return rc;
}
