/* test_symbolize.c: this test binary symbolizes return addresses inside
 * itself: function names, files and lines exact, the inlined call as a frame
 * of its own, unknown objects as <unknown>. */
#define _GNU_SOURCE
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

int main(void)
{
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 2;
    exe[n] = '\0';
    RUN(test_inlined_frames_and_lines);
    RUN(test_unknown_object);
    DONE();
}
