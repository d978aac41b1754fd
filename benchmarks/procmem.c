/* procmem.c (benchmark): what one memory sample's RSS split costs the
 * sampler (mr_procmem_read: /proc/self/status read and parsed) against one
 * read of /proc/self/smaps_rollup, as the process grows in mappings and in
 * resident memory. The numbers behind docs/format.md (MEMORY). Run, not
 * asserted on:
 *
 *   cc -O2 -Isrc/memray/_core -o build/procmem-bench benchmarks/procmem.c \
 *       src/memray/_core/procmem.c && build/procmem-bench
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "procmem.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double smaps_rollup_us(int iters)
{
    int fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096];
    double t0 = now_us();
    for (int i = 0; i < iters; i++)
        if (pread(fd, buf, sizeof buf, 0) <= 0)
            break;
    double us = (now_us() - t0) / iters;
    close(fd);
    return us;
}

int main(void)
{
    static const struct {
        int mappings;
        size_t mb;
    } steps[] = {{0, 0}, {200, 0}, {2000, 0}, {2000, 256}, {2000, 1024}};
    long page = sysconf(_SC_PAGESIZE);
    mr_procmem_t pm = MR_PROCMEM_INIT;
    if (mr_procmem_open(&pm) < 0) {
        fprintf(stderr, "no /proc/self/status or statm\n");
        return 1;
    }
    int made = 0;
    size_t have = 0;
    printf("%9s %9s %22s %22s\n", "mappings", "+MB", "status read+parse us",
           "smaps_rollup read us");
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        /* Two pages each, the second made read-only so neighbours never
         * merge into one mapping; one page touched. */
        for (; made < steps[k].mappings; made++) {
            char *p = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return 1;
            p[0] = 1;
            mprotect(p + page, (size_t)page, PROT_READ);
        }
        if (steps[k].mb > have) {
            size_t n = (steps[k].mb - have) << 20;
            char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return 1;
            madvise(p, n, MADV_NOHUGEPAGE); /* 4 kB pages: the walk's worst case */
            memset(p, 1, n);
            have = steps[k].mb;
        }
        mr_procmem_sample_t s;
        int iters = 5000;
        double t0 = now_us();
        for (int i = 0; i < iters; i++)
            mr_procmem_read(&pm, &s);
        double status_us = (now_us() - t0) / iters;
        printf("%9d %9zu %22.1f %22.1f\n", made, have, status_us,
               smaps_rollup_us(steps[k].mb > 0 ? 20 : 200));
    }
    mr_procmem_close(&pm);
    return 0;
}
