/* hooks.c: the interposed allocator functions and the GOT/PLT patching that
 * routes every loaded object's calls through them. It owns the real function
 * pointers (resolved once, before any slot is patched) and the patch lock. A
 * hook never fails the program: it returns what the real function returned,
 * and records only when the tracker wants the event. */
#define _GNU_SOURCE
#include "hooks.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "check.h"
#include "format.h"
#include "tracker.h"

#if defined(__SANITIZE_THREAD__)
#define MR_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MR_TSAN_BUILD 1
#endif
#endif

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#else
#error "hooks.c knows the GOT relocation types of x86_64 and aarch64 only"
#endif

/* Real functions: written once by resolve_real() before the first patch,
 * read-only afterwards. A hook is reached only through a slot patched after
 * that, but a PLT stub's load of the slot orders nothing that the C memory
 * model (or TSan) sees, so both sides are atomic (plain moves on x86_64 and
 * aarch64): REAL(fn). A hook of a thread that was running before the first
 * start read real.* racing with resolve_real() (tests/tsan/stress.c). */
static struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void (*free_sized)(void *, size_t);
    void (*free_aligned_sized)(void *, size_t, size_t);
    void *(*dlopen)(const char *, int);
    int (*dlclose)(void *);
    int (*prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);
    int (*pthread_setname_np)(pthread_t, const char *);
} real;
#define REAL(fn) __atomic_load_n(&real.fn, __ATOMIC_RELAXED)

#define RECORD_ALLOC(p, size, kind)                                                                \
    do {                                                                                           \
        if ((p) != NULL && mr_tracker_wants())                                                     \
            mr_tracker_record_alloc((p), (size), (kind));                                          \
    } while (0)

#define RECORD_FREE(p, kind)                                                                       \
    do {                                                                                           \
        if ((p) != NULL && mr_tracker_wants())                                                     \
            mr_tracker_record_free((p), (kind), 0);                                                \
    } while (0)

static void *hook_malloc(size_t size)
{
    void *p = REAL(malloc)(size);
    RECORD_ALLOC(p, size, MR_MALLOC);
    return p;
}

static void hook_free(void *p)
{
    RECORD_FREE(p, MR_FREE);
    REAL(free)(p);
}

static void *hook_calloc(size_t n, size_t size)
{
    void *p = REAL(calloc)(n, size);
    RECORD_ALLOC(p, n * size, MR_CALLOC);
    return p;
}

/* realloc = free(old) + alloc(new). The old block is recorded as freed before
 * realloc may hand it to another thread; if realloc then fails the block is
 * still the caller's but counted as freed (out of memory: rare and benign). */
static void *hook_realloc(void *old, size_t size)
{
    RECORD_FREE(old, MR_FREE);
    void *p = REAL(realloc)(old, size);
    RECORD_ALLOC(p, size, MR_REALLOC);
    return p;
}

static void *hook_reallocarray(void *old, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return REAL(reallocarray)(old, n, size); /* fails with ENOMEM */
    RECORD_FREE(old, MR_FREE);
    void *p = REAL(reallocarray)(old, n, size);
    RECORD_ALLOC(p, total, MR_REALLOC);
    return p;
}

static int hook_posix_memalign(void **out, size_t align, size_t size)
{
    int rc = REAL(posix_memalign)(out, align, size);
    if (rc == 0)
        RECORD_ALLOC(*out, size, MR_POSIX_MEMALIGN);
    return rc;
}

static void *hook_aligned_alloc(size_t align, size_t size)
{
    void *p = REAL(aligned_alloc)(align, size);
    RECORD_ALLOC(p, size, MR_ALIGNED_ALLOC);
    return p;
}

static void *hook_memalign(size_t align, size_t size)
{
    void *p = REAL(memalign)(align, size);
    RECORD_ALLOC(p, size, MR_MEMALIGN);
    return p;
}

static void *hook_valloc(size_t size)
{
    void *p = REAL(valloc)(size);
    RECORD_ALLOC(p, size, MR_VALLOC);
    return p;
}

static void *hook_pvalloc(size_t size)
{
    void *p = REAL(pvalloc)(size);
    /* The requested size, as for every allocator (and as memray 1.x records
     * it), though pvalloc hands out whole pages. */
    RECORD_ALLOC(p, size, MR_PVALLOC);
    return p;
}

static void *hook_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = REAL(mmap)(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && mr_tracker_wants())
        mr_tracker_record_mmap(p, len, flags, fd);
    return p;
}

static void *hook_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = REAL(mmap64)(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && mr_tracker_wants())
        mr_tracker_record_mmap(p, len, flags, fd);
    return p;
}

static int hook_munmap(void *addr, size_t len)
{
    if (addr != NULL && mr_tracker_wants())
        mr_tracker_record_free(addr, MR_MUNMAP, len);
    return REAL(munmap)(addr, len);
}

static void hook_free_sized(void *p, size_t size)
{
    RECORD_FREE(p, MR_FREE);
    REAL(free_sized)(p, size);
}

static void hook_free_aligned_sized(void *p, size_t align, size_t size)
{
    RECORD_FREE(p, MR_FREE);
    REAL(free_aligned_sized)(p, align, size);
}

static int patch_all(int restore);
static mr_mutex_t patch_lock = MR_MUTEX_INITIALIZER;
static int installed; /* patch_lock; read unlocked by hook_dlopen (a stale 1
                       * only costs a patch pass that finds nothing to do) */

/* The dynamic section entry `tag` of the object lm, or NULL. */
static const ElfW(Dyn) * dyn_entry(const struct link_map *lm, ElfW(Sxword) tag)
{
    for (const ElfW(Dyn) *d = lm->l_ld; d != NULL && d->d_tag != DT_NULL; d++)
        if (d->d_tag == tag)
            return d;
    return NULL;
}

/* The directory of the object lm, for $ORIGIN: its name as the loader has it
 * (made absolute against the working directory), or /proc/self/exe for the
 * main program, without the last component. 0, or -1 when unknown. */
static int origin_of(const struct link_map *lm, char *out, size_t size)
{
    const char *name = lm->l_name;
    size_t n = 0;
    if (name == NULL || name[0] == '\0') {
        ssize_t got = readlink("/proc/self/exe", out, size - 1);
        if (got <= 0)
            return -1;
        n = (size_t)got;
    } else {
        if (name[0] != '/') {
            if (getcwd(out, size) == NULL)
                return -1;
            n = strlen(out);
            if (n + 1 >= size)
                return -1;
            out[n++] = '/';
        }
        size_t len = strlen(name);
        if (n + len >= size)
            return -1;
        memcpy(out + n, name, len);
        n += len;
    }
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    return 0;
}

/* The length of the $ORIGIN or ${ORIGIN} token at p (left bytes before the
 * entry ends), or 0 if another token ($LIB, $PLATFORM) or none is there. */
static size_t origin_token(const char *p, size_t left)
{
    if (left >= 9 && strncmp(p, "${ORIGIN}", 9) == 0)
        return 9;
    if (left >= 7 && strncmp(p, "$ORIGIN", 7) == 0 && (left == 7 || p[7] == '/'))
        return 7;
    return 0;
}

/* Tries dir/file for each directory of the colon-separated list, with
 * $ORIGIN (or ${ORIGIN}) standing for the directory of `owner` (NULL: the
 * list may not use it). The first that loads is returned. */
static void *dlopen_in(const char *list, const struct link_map *owner, const char *file, int flags)
{
    char origin[4096], path[4096];
    int have_origin = 0;
    size_t flen = strlen(file);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t n = 0;
        int ok = len > 0;
        for (size_t i = 0; ok && i < len;) {
            const char *piece = p + i;
            size_t plen = 1;
            if (p[i] == '$') {
                size_t tok = origin_token(p + i, len - i);
                /* $LIB, $PLATFORM and unknown tokens: the entry is left to the
                 * loader's own search. */
                if (tok == 0 || owner == NULL) {
                    ok = 0;
                    break;
                }
                if (!have_origin && origin_of(owner, origin, sizeof origin) < 0) {
                    ok = 0;
                    break;
                }
                have_origin = 1;
                piece = origin;
                plen = strlen(origin);
                i += tok;
            } else {
                i++;
            }
            if (n + plen >= sizeof path) {
                ok = 0;
                break;
            }
            memcpy(path + n, piece, plen);
            n += plen;
        }
        if (ok && n + 1 + flen < sizeof path) {
            path[n++] = '/';
            memcpy(path + n, file, flen + 1);
            if (access(path, F_OK) == 0) {
                void *h = REAL(dlopen)(path, flags);
                if (h != NULL)
                    return h;
            }
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* The string of dynamic entry `tag` (DT_RPATH, DT_RUNPATH) of lm, or NULL. */
static const char *dyn_string(const struct link_map *lm, ElfW(Sxword) tag)
{
    const ElfW(Dyn) *entry = dyn_entry(lm, tag), *strtab = dyn_entry(lm, DT_STRTAB);
    if (entry == NULL || strtab == NULL)
        return NULL;
    /* ld.so relocates d_ptr entries in place (as dyn_addr above). */
    uintptr_t base = strtab->d_un.d_ptr;
    if (base < lm->l_addr)
        base += lm->l_addr;
    return (const char *)base + entry->d_un.d_val;
}

/* dlopen(file) as if called from `caller`. The real dlopen searches a bare
 * name along the paths of the object that called it, which is this
 * extension when it goes through the hook; the caller's own RPATH or RUNPATH
 * (with $ORIGIN its directory) would be missed. So a bare name is looked for
 * as ld.so does for the caller: loaded already; the caller's DT_RPATH, then
 * the main program's (unless the caller has a DT_RUNPATH); LD_LIBRARY_PATH;
 * the caller's DT_RUNPATH; and last the real dlopen's own search (the
 * cache, the default directories). The loaders of the caller (ld.so also
 * reads their RPATHs) are not known through the public link_map. */
static void *dlopen_as(const char *file, int flags, const void *caller)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (file == NULL || strchr(file, '/') != NULL ||
        dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) == 0 || lm == NULL)
        return REAL(dlopen)(file, flags);
    void *h = REAL(dlopen)(file, flags | RTLD_NOLOAD);
    if (h != NULL)
        return h;
    const char *runpath = dyn_string(lm, DT_RUNPATH);
    if (runpath == NULL) {
        if ((h = dlopen_in(dyn_string(lm, DT_RPATH), lm, file, flags)) != NULL)
            return h;
        struct link_map *main_map = lm;
        while (main_map->l_prev != NULL)
            main_map = main_map->l_prev;
        if (main_map != lm && dyn_string(main_map, DT_RUNPATH) == NULL &&
            (h = dlopen_in(dyn_string(main_map, DT_RPATH), main_map, file, flags)) != NULL)
            return h;
    }
    if ((h = dlopen_in(secure_getenv("LD_LIBRARY_PATH"), NULL, file, flags)) != NULL)
        return h;
    if ((h = dlopen_in(runpath, lm, file, flags)) != NULL)
        return h;
    return REAL(dlopen)(file, flags);
}

/* A library loaded while tracking gets its slots patched before anyone can
 * call into it. */
static void *hook_dlopen(const char *file, int flags)
{
    void *h = dlopen_as(file, flags, __builtin_return_address(0));
    if (h != NULL && __atomic_load_n(&installed, __ATOMIC_RELAXED)) {
        mr_tracker_guard++;
        mr_mutex_lock(&patch_lock);
        if (installed)
            patch_all(0);
        mr_mutex_unlock(&patch_lock);
        mr_tracker_guard--;
        mr_tracker_objects_changed();
    }
    return h;
}

static int hook_dlclose(void *handle)
{
    int rc = REAL(dlclose)(handle);
    if (rc == 0 && __atomic_load_n(&installed, __ATOMIC_RELAXED))
        mr_tracker_objects_changed();
    return rc;
}

static int hook_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                      unsigned long a5)
{
    int rc = REAL(prctl)(option, a2, a3, a4, a5);
    if (rc == 0 && option == PR_SET_NAME && a2 != 0 && mr_tracker_wants())
        mr_tracker_record_thread_name(0, (const char *)a2, strnlen((const char *)a2, 16));
    return rc;
}

/* glibc names the calling thread by writing /proc, not through prctl. */
static int hook_pthread_setname_np(pthread_t th, const char *name)
{
    int rc = REAL(pthread_setname_np)(th, name);
    if (rc == 0 && pthread_equal(th, pthread_self()) && mr_tracker_wants())
        mr_tracker_record_thread_name(0, name, strnlen(name, 16));
    return rc;
}

typedef struct hook {
    const char *name;
    void *hook;
    void **real;
} hook_t;

#define HOOK(fn)                                                                                   \
    {                                                                                              \
#fn, (void *)hook_##fn, (void **)&real.fn                                                  \
    }
static const hook_t hooks[] = {
    HOOK(malloc),
    HOOK(free),
    HOOK(calloc),
    HOOK(realloc),
    HOOK(reallocarray),
    HOOK(posix_memalign),
    HOOK(aligned_alloc),
    HOOK(memalign),
    HOOK(valloc),
    HOOK(pvalloc),
    HOOK(mmap),
    HOOK(mmap64),
    HOOK(munmap),
    HOOK(free_sized),
    HOOK(free_aligned_sized),
    HOOK(dlopen),
    HOOK(dlclose),
    HOOK(prctl),
    HOOK(pthread_setname_np),
};
#define N_HOOKS (sizeof hooks / sizeof hooks[0])

static int resolved;

/* fork(): a patch pass runs inside dl_iterate_phdr, which holds the loader's
 * lock, and glibc does not reset that lock in a child: a fork during another
 * thread's pass (a start, a stop, a dlopen) would leave it held for good, and
 * the child would hang in its next dl_iterate_phdr (its stop's uninstall, a
 * native unwind). So fork waits for the pass to end; the child starts with a
 * fresh patch lock (mr_hooks_after_fork_child). */
static void fork_prepare(void)
{
    mr_mutex_lock(&patch_lock);
}

static void fork_parent(void)
{
    mr_mutex_unlock(&patch_lock);
}

/* patch_lock held; once. */
static void resolve_real(void)
{
    for (size_t i = 0; i < N_HOOKS; i++)
        __atomic_store_n(hooks[i].real, dlsym(RTLD_DEFAULT, hooks[i].name), __ATOMIC_RELAXED);
    pthread_atfork(fork_prepare, fork_parent, NULL);
    resolved = 1;
}

static const hook_t *find_hook(const char *name)
{
    /* All hooked names start with one of these letters: most symbols are
     * rejected by the first byte. */
    switch (name[0]) {
    case 'm':
    case 'f':
    case 'c':
    case 'r':
    case 'p':
    case 'a':
    case 'v':
    case 'd':
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < N_HOOKS; i++)
        if (strcmp(name, hooks[i].name) == 0)
            return *hooks[i].real != NULL ? &hooks[i] : NULL;
    return NULL;
}

typedef struct object_info {
    uintptr_t base;
    uintptr_t relro_start, relro_end;
    const ElfW(Sym) * symtab;
    const char *strtab;
    size_t strsz;
    int restore;
    int err;
} object_info_t;

static uintptr_t dyn_addr(const struct dl_phdr_info *info, ElfW(Addr) ptr)
{
    /* ld.so relocates most d_ptr entries in place; the vdso's are not. */
    return ptr < info->dlpi_addr ? info->dlpi_addr + ptr : ptr;
}

static void patch_slot(object_info_t *o, void **slot, const hook_t *h)
{
    void *want = o->restore ? *h->real : h->hook;
    void *unwanted = o->restore ? h->hook : NULL;
    if (*slot == want || (unwanted != NULL && *slot != unwanted))
        return;
    uintptr_t addr = (uintptr_t)slot;
    int in_relro = addr >= o->relro_start && addr + sizeof(void *) <= o->relro_end;
    if (in_relro) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void *start = (void *)(addr & ~(uintptr_t)(page - 1));
        if (mprotect(start, page, PROT_READ | PROT_WRITE) < 0) {
            o->err = -errno;
            return;
        }
        __atomic_store_n(slot, want, __ATOMIC_RELEASE);
        mprotect(start, page, PROT_READ);
    } else {
        __atomic_store_n(slot, want, __ATOMIC_RELEASE);
    }
}

static void patch_relocs(object_info_t *o, uintptr_t table, size_t size, size_t entsize)
{
    if (table == 0 || size == 0 || entsize == 0)
        return;
    for (size_t off = 0; off + entsize <= size; off += entsize) {
        /* ElfW(Rel) and ElfW(Rela) start alike: r_offset, r_info. */
        const ElfW(Rel) *r = (const ElfW(Rel) *)(table + off);
        unsigned long type = ELF64_R_TYPE(r->r_info);
        if (type != R_JUMP_SLOT && type != R_GLOB_DAT)
            continue;
        size_t sym = ELF64_R_SYM(r->r_info);
        ElfW(Word) name_off = o->symtab[sym].st_name;
        if (o->strsz != 0 && name_off >= o->strsz)
            continue;
        const hook_t *h = find_hook(o->strtab + name_off);
        if (h != NULL)
            patch_slot(o, (void **)(o->base + r->r_offset), h);
    }
}

static int contains_self(const struct dl_phdr_info *info)
{
    uintptr_t self = (uintptr_t)&patch_relocs;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (self >= start && self < start + ph->p_memsz)
            return 1;
    }
    return 0;
}

static int skipped(const char *name)
{
    /* The loader runs before and beneath everything; the vdso has no GOT;
     * sanitizer runtimes implement the allocator we would forward to. */
    static const char *const skip[] = {"linux-vdso", "/ld-linux", "ld-linux-", "libasan",
                                       "libubsan",   "libtsan",   "liblsan"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (strstr(name, skip[i]) != NULL)
            return 1;
#if defined(MR_TSAN_BUILD)
    /* ThreadSanitizer builds only: TSan's runtime calls into libc before it
     * has set up a new thread (pthread_getattr_np reallocs at thread start),
     * and an instrumented hook crashes there. libc's own allocations go
     * unrecorded in these builds; every other object's calls are hooked. */
    if (strstr(name, "/libc.so") != NULL)
        return 1;
#endif
    return 0;
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    object_info_t *o = data;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (skipped(name) || contains_self(info))
        return 0;
    const ElfW(Dyn) *dyn = NULL;
    o->base = info->dlpi_addr;
    o->relro_start = o->relro_end = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
        else if (ph->p_type == PT_GNU_RELRO) {
            o->relro_start = info->dlpi_addr + ph->p_vaddr;
            o->relro_end = o->relro_start + ph->p_memsz;
        }
    }
    if (dyn == NULL)
        return 0;
    uintptr_t jmprel = 0, rela = 0, rel = 0;
    size_t pltrelsz = 0, relasz = 0, relsz = 0, relaent = sizeof(ElfW(Rela)),
           relent = sizeof(ElfW(Rel));
    long pltrel = DT_RELA;
    o->symtab = NULL;
    o->strtab = NULL;
    o->strsz = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB:
            o->symtab = (const ElfW(Sym) *)dyn_addr(info, d->d_un.d_ptr);
            break;
        case DT_STRTAB:
            o->strtab = (const char *)dyn_addr(info, d->d_un.d_ptr);
            break;
        case DT_STRSZ:
            o->strsz = d->d_un.d_val;
            break;
        case DT_JMPREL:
            jmprel = dyn_addr(info, d->d_un.d_ptr);
            break;
        case DT_PLTRELSZ:
            pltrelsz = d->d_un.d_val;
            break;
        case DT_PLTREL:
            pltrel = (long)d->d_un.d_val;
            break;
        case DT_RELA:
            rela = dyn_addr(info, d->d_un.d_ptr);
            break;
        case DT_RELASZ:
            relasz = d->d_un.d_val;
            break;
        case DT_RELAENT:
            relaent = d->d_un.d_val;
            break;
        case DT_REL:
            rel = dyn_addr(info, d->d_un.d_ptr);
            break;
        case DT_RELSZ:
            relsz = d->d_un.d_val;
            break;
        case DT_RELENT:
            relent = d->d_un.d_val;
            break;
        default:
            break;
        }
    }
    if (o->symtab == NULL || o->strtab == NULL)
        return 0;
    patch_relocs(o, jmprel, pltrelsz, pltrel == DT_RELA ? relaent : relent);
    patch_relocs(o, rela, relasz, relaent);
    patch_relocs(o, rel, relsz, relent);
    return 0;
}

/* patch_lock held. */
static int patch_all(int restore)
{
    MR_ASSERT(mr_mutex_held(&patch_lock));
    object_info_t o = {.restore = restore};
    dl_iterate_phdr(patch_object, &o);
    return o.err;
}

int mr_hooks_install(void)
{
    mr_mutex_lock(&patch_lock);
    if (!resolved)
        resolve_real();
    int rc = 0;
    if (real.malloc == NULL || real.free == NULL)
        rc = -ENOSYS;
    else
        rc = patch_all(0);
    if (rc == 0)
        __atomic_store_n(&installed, 1, __ATOMIC_RELAXED);
    else
        patch_all(1);
    mr_mutex_unlock(&patch_lock);
    return rc;
}

void mr_hooks_uninstall(void)
{
    mr_mutex_lock(&patch_lock);
    __atomic_store_n(&installed, 0, __ATOMIC_RELAXED);
    patch_all(1);
    mr_mutex_unlock(&patch_lock);
}

void mr_hooks_after_fork_child(void)
{
    mr_mutex_init(&patch_lock);
}
