/* test_symbolize.c: this test binary symbolizes return addresses inside
 * itself: function names, files and lines exact, the inlined call as a frame
 * of its own, unknown objects as <unknown>. And every address of a function
 * in libinlinechain.so (built -O2 -g next to this binary: chains of inlined
 * calls, some inside nested blocks) resolves to the inline chain elfutils'
 * eu-addr2line -i gives for it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "symbolize.h"

__attribute__((noinline)) static void capture(void **out)
{
    *out = __builtin_return_address(0);
    __asm__ volatile("" ::: "memory");
}

static inline __attribute__((always_inline)) void inlined_helper(void **out)
{
    capture(out); /* LINE_INLINE */
}

__attribute__((noinline)) void outer_fn(void **out)
{
    inlined_helper(out); /* LINE_OUTER */
    __asm__ volatile("" ::: "memory");
}

static int line_of(const char *marker)
{
    FILE *f = fopen(__FILE__, "r");
    char buf[512];
    int line = 0, found = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        line++;
        if (strstr(buf, marker) && !strstr(buf, "line_of(")) {
            found = line;
            break;
        }
    }
    if (f)
        fclose(f);
    return found;
}

struct find {
    uintptr_t ip;
    uintptr_t bias;
    int found;
};

static int find_obj(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct find *f = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t s = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->ip >= s && f->ip < s + ph->p_memsz) {
            f->bias = info->dlpi_addr;
            f->found = 1;
            return 1;
        }
    }
    return 0;
}

static char exe[4096];

static void test_inlined_frames_and_lines(void)
{
    void *ip = NULL;
    outer_fn(&ip);
    struct find f = {(uintptr_t)ip, 0, 0};
    dl_iterate_phdr(find_obj, &f);
    CHECK(f.found);
    mr_symbolizer_t *s;
    CHECK_EQ(mr_sym_new(&s), 0);
    mr_sym_frame_t fr[8];
    int n = mr_sym_resolve(s, exe, f.bias, (uint64_t)(uintptr_t)ip, fr, 8);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK(strcmp(fr[0].function, "inlined_helper") == 0);
        CHECK(strstr(fr[0].file, "test_symbolize.c") != NULL);
        CHECK_EQ(fr[0].line, line_of("LINE_INLINE"));
        CHECK(strcmp(fr[1].function, "outer_fn") == 0);
        CHECK(strstr(fr[1].file, "test_symbolize.c") != NULL);
        CHECK_EQ(fr[1].line, line_of("LINE_OUTER"));
    }
    /* Cached: the same answer again. */
    mr_sym_frame_t again[8];
    CHECK_EQ(mr_sym_resolve(s, exe, f.bias, (uint64_t)(uintptr_t)ip, again, 8), n);
    CHECK(n < 1 || again[0].function == fr[0].function);
    mr_sym_destroy(s);
}

static void test_unknown_object(void)
{
    mr_symbolizer_t *s;
    CHECK_EQ(mr_sym_new(&s), 0);
    mr_sym_frame_t fr[4];
    CHECK_EQ(mr_sym_resolve(s, "/nonexistent/libgone.so", 0x7f0000000000, 0x7f0000001234, fr, 4),
             1);
    CHECK(strcmp(fr[0].function, "<unknown>") == 0);
    CHECK(strcmp(fr[0].file, "/nonexistent/libgone.so") == 0);
    CHECK_EQ(fr[0].line, 0);
    CHECK_EQ(mr_sym_resolve(s, "", 0, 0x1000, fr, 4), 1);
    CHECK(strcmp(fr[0].function, "<unknown>") == 0);
    mr_sym_destroy(s);
}

/* One address's frames as eu-addr2line prints them. */
typedef struct oracle_frame {
    char function[256];
    char file[PATH_MAX];
    unsigned line;
} oracle_frame_t;

/* Copies at most size - 1 bytes and terminates. */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* "file:line:col", "file:line" or "??:0" -> file, line. */
static void parse_location(const char *text, oracle_frame_t *f)
{
    char buf[PATH_MAX];
    copy_str(buf, sizeof buf, text);
    buf[strcspn(buf, "\n")] = '\0';
    char *last = strrchr(buf, ':');
    f->line = 0;
    if (last != NULL) {
        *last = '\0';
        char *prev = strrchr(buf, ':');
        if (prev != NULL && prev[1] != '\0' && strspn(prev + 1, "0123456789") == strlen(prev + 1)) {
            f->line = (unsigned)strtoul(prev + 1, NULL, 10); /* file:line:col */
            *prev = '\0';
        } else {
            f->line = (unsigned)strtoul(last + 1, NULL, 10);
        }
    }
    copy_str(f->file, sizeof f->file, buf);
}

#define ORACLE_MAX 16

/* Compares our frames for every byte of function `name` in the object at
 * `path` with eu-addr2line -i -f. Returns the deepest chain seen. */
static int compare_with_eu_addr2line(const char *path, const char *name)
{
    void *h = dlopen(path, RTLD_NOW);
    CHECK(h != NULL);
    if (h == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 0;
    }
    void *fn = dlsym(h, name);
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    struct link_map *lm = NULL;
    CHECK(fn != NULL && dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) != 0 && sym != NULL);
    CHECK(dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL);
    if (fn == NULL || sym == NULL || lm == NULL)
        return 0;
    uintptr_t start = (uintptr_t)fn - lm->l_addr;
    size_t size = sym->st_size;
    CHECK(size > 0 && size < 4096);
    char *cmd = malloc(64 + strlen(path) + size * 20);
    int len = sprintf(cmd, "eu-addr2line -a -i -f -e '%s'", path);
    for (size_t off = 0; off < size; off++)
        len += sprintf(cmd + len, " 0x%zx", (size_t)(start + off));
    FILE *p = popen(cmd, "r");
    free(cmd);
    CHECK(p != NULL);
    mr_symbolizer_t *s;
    CHECK_EQ(mr_sym_new(&s), 0);
    oracle_frame_t want[ORACLE_MAX];
    int nwant = -1, deepest = 0, compared = 0;
    uintptr_t addr = 0;
    char line[PATH_MAX + 300];
    /* Each address prints "0x...", then per frame a function line and a
     * location line; the first function line may add " inlined at ...". */
    for (int more = 1; more;) {
        char *got = p ? fgets(line, sizeof line, p) : NULL;
        more = got != NULL;
        if ((!more || strncmp(line, "0x", 2) == 0) && nwant >= 0) {
            mr_sym_frame_t fr[ORACLE_MAX];
            int n = mr_sym_resolve(s, path, lm->l_addr, lm->l_addr + addr + 1, fr, ORACLE_MAX);
            int same = n == nwant;
            for (int i = 0; same && i < n; i++) {
                int unknown = strcmp(want[i].function, "??") == 0;
                same = unknown ? strcmp(fr[i].function, "<unknown>") == 0
                               : strcmp(fr[i].function, want[i].function) == 0 &&
                                     strcmp(fr[i].file, want[i].file) == 0 &&
                                     fr[i].line == want[i].line;
            }
            if (!same) {
                fprintf(stderr, "%s+0x%zx: ours:\n", name, (size_t)(addr - start));
                for (int i = 0; i < n; i++)
                    fprintf(stderr, "  %s %s:%u\n", fr[i].function, fr[i].file, fr[i].line);
                fprintf(stderr, "eu-addr2line:\n");
                for (int i = 0; i < nwant; i++)
                    fprintf(stderr, "  %s %s:%u\n", want[i].function, want[i].file, want[i].line);
            }
            CHECK(same);
            compared++;
            if (nwant > deepest)
                deepest = nwant;
            nwant = -1;
        }
        if (!more)
            break;
        if (strncmp(line, "0x", 2) == 0) {
            addr = (uintptr_t)strtoull(line, NULL, 16);
            nwant = 0;
        } else if (nwant >= 0 && nwant < ORACLE_MAX) {
            oracle_frame_t *f = &want[nwant];
            line[strcspn(line, " \n")] = '\0';
            copy_str(f->function, sizeof f->function, line);
            char loc[PATH_MAX];
            if (p == NULL || fgets(loc, sizeof loc, p) == NULL)
                break;
            parse_location(loc, f);
            nwant++;
        }
    }
    if (p != NULL)
        CHECK_EQ(pclose(p), 0);
    CHECK_EQ(compared, (long long)size);
    mr_sym_destroy(s);
    dlclose(h);
    return deepest;
}

static char inlinechain[PATH_MAX];

static void test_inline_chains_match_eu_addr2line(void)
{
    /* ic_leaf <- ic_mid <- ic_upper <- ic_top <- ic_alloc: five frames. */
    CHECK(compare_with_eu_addr2line(inlinechain, "ic_alloc") >= 5);
}

int main(void)
{
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 2;
    exe[n] = '\0';
    snprintf(inlinechain, sizeof inlinechain, "%.*s/libinlinechain.so",
             (int)(strrchr(exe, '/') - exe), exe);
    RUN(test_inlined_frames_and_lines);
    RUN(test_unknown_object);
    RUN(test_inline_chains_match_eu_addr2line);
    DONE();
}
