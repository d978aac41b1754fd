/* symbolize.c: libdwfl-backed symbolization with per-object sessions and a
 * per-address cache. Owns every string it hands out. */
#define _GNU_SOURCE
#include "symbolize.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashmap.h"
#include "util.h"

/* From the C++ runtime: demangles Itanium ABI names. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

typedef struct object {
    char *path;
    uint64_t bias;
    Dwfl *dwfl;       /* NULL when the file could not be opened */
    Dwfl_Module *mod; /* its one module */
} object_t;

typedef struct result {
    uint32_t first; /* index into frames */
    uint32_t count;
} result_t;

struct mr_symbolizer {
    object_t *objects;
    size_t n_objects, cap_objects;
    mr_hm_t object_ids; /* hash(path, bias) -> object index (confirmed by compare) */
    mr_hm_t results;    /* object index << 48 ^ ip -> result index (exact: see key()) */
    result_t *res;
    size_t n_res, cap_res;
    mr_sym_frame_t *frames;
    size_t n_frames, cap_frames;
    char **strings; /* everything owned, freed at destroy */
    size_t n_strings, cap_strings;
};

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
};

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
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_objects; i++) {
        if (s->objects[i].dwfl)
            dwfl_end(s->objects[i].dwfl);
        free(s->objects[i].path);
    }
    for (size_t i = 0; i < s->n_strings; i++)
        free(s->strings[i]);
    free(s->objects);
    free(s->strings);
    free(s->res);
    free(s->frames);
    mr_hm_destroy(&s->object_ids);
    mr_hm_destroy(&s->results);
    free(s);
}

static const char *own(mr_symbolizer_t *s, char *str)
{
    if (str == NULL)
        return NULL;
    if (mr_grow_array((void **)&s->strings, &s->cap_strings, s->n_strings + 1, sizeof *s->strings) <
        0) {
        free(str);
        return NULL;
    }
    s->strings[s->n_strings++] = str;
    return str;
}

static const char *own_copy(mr_symbolizer_t *s, const char *str)
{
    return str ? own(s, strdup(str)) : NULL;
}

static const char *demangled(mr_symbolizer_t *s, const char *name)
{
    if (name == NULL)
        return NULL;
    if (name[0] == '_' && name[1] == 'Z') {
        int status = 0;
        char *d = __cxa_demangle(name, NULL, NULL, &status);
        if (status == 0 && d != NULL)
            return own(s, d);
        free(d);
    }
    return own_copy(s, name);
}

/* A path from a capture is untrusted: open it only if it names a regular
 * file. stat first, so a FIFO, a device or a socket is never opened (opening
 * one may block or have side effects); O_NONBLOCK and a second check on the
 * descriptor cover a file swapped in between. -1 if not a readable regular
 * file. */
static int open_regular_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

static object_t *object_for(mr_symbolizer_t *s, const char *path, uint64_t bias, size_t *index)
{
    uint64_t key = mr_hash_bytes(path, strlen(path), bias);
    uint64_t found;
    while (mr_hm_get(&s->object_ids, key, &found)) {
        object_t *o = &s->objects[found];
        if (o->bias == bias && strcmp(o->path, path) == 0) {
            *index = found;
            return o;
        }
        key++;
    }
    if (mr_grow_array((void **)&s->objects, &s->cap_objects, s->n_objects + 1, sizeof *s->objects) <
        0)
        return NULL;
    object_t *o = &s->objects[s->n_objects];
    *o = (object_t){.path = strdup(path), .bias = bias};
    if (o->path == NULL || mr_hm_put(&s->object_ids, key, s->n_objects) < 0) {
        free(o->path);
        return NULL;
    }
    int fd = path[0] == '/' ? open_regular_file(path) : -1;
    if (fd >= 0) {
        o->dwfl = dwfl_begin(&callbacks);
        if (o->dwfl != NULL) {
            dwfl_report_begin(o->dwfl);
            o->mod = dwfl_report_elf(o->dwfl, path, path, fd, bias, false);
            dwfl_report_end(o->dwfl, NULL, NULL);
            if (o->mod == NULL) {
                dwfl_end(o->dwfl);
                o->dwfl = NULL;
            } else {
                fd = -1; /* libdwfl's now */
            }
        }
        if (fd >= 0)
            close(fd);
    }
    *index = s->n_objects++;
    return o;
}

static int push_frame(mr_symbolizer_t *s, const char *function, const char *file, unsigned line)
{
    if (mr_grow_array((void **)&s->frames, &s->cap_frames, s->n_frames + 1, sizeof *s->frames) < 0)
        return -ENOMEM;
    s->frames[s->n_frames++] =
        (mr_sym_frame_t){function ? function : "<unknown>", file ? file : "", line};
    return 0;
}

static const char *die_name(mr_symbolizer_t *s, Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *name = NULL;
    if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) ||
        dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr))
        name = dwarf_formstring(&attr);
    if (name == NULL)
        name = dwarf_diename(die);
    if (name == NULL && dwarf_attr_integrate(die, DW_AT_name, &attr))
        name = dwarf_formstring(&attr);
    return demangled(s, name);
}

/* Frames for pc (already adjusted to the call instruction) from DWARF scopes:
 * the innermost inlined function first, each outer one at the line of the
 * call it inlined. Returns frames pushed, 0 if DWARF does not cover pc. */
static int dwarf_frames(mr_symbolizer_t *s, Dwfl_Module *mod, Dwarf_Addr pc)
{
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, pc, &bias);
    if (cudie == NULL)
        return 0;
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cudie, pc - bias, &scopes);
    if (n <= 0)
        return 0;
    /* Past the innermost inlined instance, dwarf_getscopes continues with
     * the scopes of its abstract definition, not with the concrete callers.
     * The innermost scope may be a lexical block inside an inlined call (or
     * one nested in blocks of several), so the chain is always rebuilt from
     * it: dwarf_getscopes_die gives its concrete parents, every block and
     * inlined instance up to the subprogram and the CU (as eu-addr2line -i). */
    Dwarf_Die *chain = NULL;
    int m = dwarf_getscopes_die(&scopes[0], &chain);
    if (m > 0) {
        free(scopes);
        scopes = chain;
        n = m;
    }
    const char *file = NULL;
    unsigned line = 0;
    Dwfl_Line *dl = dwfl_module_getsrc(mod, pc);
    if (dl != NULL) {
        int l = 0;
        const char *f = dwfl_lineinfo(dl, NULL, &l, NULL, NULL, NULL);
        file = own_copy(s, f);
        line = l > 0 ? (unsigned)l : 0;
    }
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    dwarf_getsrcfiles(cudie, &files, &nfiles);
    int pushed = 0;
    for (int i = 0; i < n; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram &&
            tag != DW_TAG_entry_point)
            continue;
        if (push_frame(s, die_name(s, &scopes[i]), file, line) < 0)
            break;
        pushed++;
        if (tag != DW_TAG_inlined_subroutine)
            break;
        /* The next (outer) frame is at this inlined call's site. */
        Dwarf_Attribute attr;
        Dwarf_Word v;
        file = NULL;
        line = 0;
        if (dwarf_attr(&scopes[i], DW_AT_call_file, &attr) && dwarf_formudata(&attr, &v) == 0 &&
            files != NULL && v < nfiles)
            file = own_copy(s, dwarf_filesrc(files, v, NULL, NULL));
        if (dwarf_attr(&scopes[i], DW_AT_call_line, &attr) && dwarf_formudata(&attr, &v) == 0)
            line = (unsigned)v;
    }
    free(scopes);
    return pushed;
}

int mr_sym_resolve(mr_symbolizer_t *s, const char *path, uint64_t bias, uint64_t ip,
                   mr_sym_frame_t *frames, int max)
{
    if (max <= 0)
        return 0;
    size_t index = SIZE_MAX;
    object_t *o = object_for(s, path, bias, &index);
    uint64_t rkey = ((uint64_t)index << 48) ^ ip;
    uint64_t ridx;
    result_t r = {0, 0};
    int cached = 0;
    /* Confirm: the packed key is exact while ip < 2^48 and index < 2^16. */
    if (ip < (1ull << 48) && index < (1u << 16) && mr_hm_get(&s->results, rkey, &ridx)) {
        r = s->res[ridx];
        cached = 1;
    }
    if (!cached) {
        r.first = (uint32_t)s->n_frames;
        /* A return address points after the call: look up the call itself. */
        Dwarf_Addr pc = ip ? ip - 1 : ip;
        int n = 0;
        if (o != NULL && o->mod != NULL) {
            n = dwarf_frames(s, o->mod, pc);
            if (n == 0) {
                const char *name = dwfl_module_addrname(o->mod, pc);
                if (name != NULL && push_frame(s, demangled(s, name), o->path, 0) == 0)
                    n = 1;
            }
        }
        if (n == 0 && push_frame(s, "<unknown>", o ? o->path : path, 0) == 0)
            n = 1;
        r.count = (uint32_t)n;
        /* Out of memory only costs the cache entry. */
        mr_grow_array((void **)&s->res, &s->cap_res, s->n_res + 1, sizeof *s->res);
        if (s->n_res < s->cap_res && ip < (1ull << 48) && index < (1u << 16)) {
            s->res[s->n_res] = r;
            if (mr_hm_put(&s->results, rkey, s->n_res) == 0)
                s->n_res++;
        }
    }
    int n = (int)r.count < max ? (int)r.count : max;
    memcpy(frames, s->frames + r.first, (size_t)n * sizeof *frames);
    return n;
}
