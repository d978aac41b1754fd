/* procmem.c: reading the process's resident memory (procmem.h). Owns two
 * descriptors and hand-written parsers over a stack buffer: the sampler calls
 * it with its reentrancy guard raised, where neither stdio nor the allocator
 * may be used. Does not own when it is read or where the numbers go. */
#define _GNU_SOURCE
#include "procmem.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Big enough for all of status up to RssShmem in one read on any machine we
 * know (it is ~1.5 kB); a longer file (thousands of supplementary groups)
 * is read on in pieces. */
#define STATUS_BUF 4096
/* Bound on the pieces read per sample, should the file never end. */
#define STATUS_MAX_READS 64

int mr_procmem_open(mr_procmem_t *pm)
{
    long ps = sysconf(_SC_PAGESIZE);
    pm->page_size = ps > 0 ? (uint64_t)ps : 4096;
    pm->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    int err = pm->status_fd < 0 ? errno : 0;
    pm->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (pm->statm_fd < 0 && pm->status_fd < 0)
        return -(err ? err : errno);
    return 0;
}

void mr_procmem_close(mr_procmem_t *pm)
{
    if (pm->status_fd >= 0)
        close(pm->status_fd);
    if (pm->statm_fd >= 0)
        close(pm->statm_fd);
    pm->status_fd = pm->statm_fd = -1;
}

/* Whether [p, end) starts with the NUL-terminated key. */
static int starts_with(const char *p, const char *end, const char *key)
{
    for (; *key; p++, key++)
        if (p >= end || *p != *key)
            return 0;
    return 1;
}

/* The decimal number after blanks at [p, end), in *out: 0, or -1 when there
 * is none or it overflows. */
static int parse_u64(const char *p, const char *end, uint64_t *out, const char **after)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    if (after != NULL)
        *after = p;
    return 0;
}

size_t mr_procmem_parse_status(const char *buf, size_t len, int mid_line, mr_status_fields_t *acc)
{
    static const struct {
        const char *key;
        unsigned bit;
    } keys[] = {
        {"RssAnon:", MR_STATUS_ANON},
        {"RssFile:", MR_STATUS_FILE},
        {"RssShmem:", MR_STATUS_SHMEM},
    };
    const char *p = buf, *end = buf + len;
    size_t used = 0;
    while (p < end) {
        const char *nl = p;
        while (nl < end && *nl != '\n')
            nl++;
        if (nl >= end)
            break; /* an incomplete line: the caller reads it again */
        if (!mid_line && *p == 'R') {
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                size_t klen = 0;
                while (keys[k].key[klen])
                    klen++;
                uint64_t v;
                const char *after;
                if (starts_with(p, nl, keys[k].key) && parse_u64(p + klen, nl, &v, &after) == 0 &&
                    v <= UINT64_MAX / 1024) {
                    if (keys[k].bit == MR_STATUS_ANON)
                        acc->anon_kb = v;
                    else if (keys[k].bit == MR_STATUS_FILE)
                        acc->file_kb = v;
                    else
                        acc->shmem_kb = v;
                    acc->found |= keys[k].bit;
                }
            }
        }
        mid_line = 0;
        p = nl + 1;
        used = (size_t)(p - buf);
    }
    return used;
}

int mr_procmem_parse_statm(const char *buf, size_t len, uint64_t *resident, uint64_t *shared)
{
    const char *p = buf, *end = buf + len;
    uint64_t size;
    if (parse_u64(p, end, &size, &p) < 0 || parse_u64(p, end, resident, &p) < 0 ||
        parse_u64(p, end, shared, &p) < 0)
        return -EINVAL;
    return 0;
}

/* From status: 0 when all three Rss* lines were read. */
static int read_status(int fd, mr_status_fields_t *acc)
{
    char buf[STATUS_BUF];
    off_t off = 0;
    int mid_line = 0;
    for (int i = 0; i < STATUS_MAX_READS && acc->found != MR_STATUS_ALL; i++) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n <= 0)
            break;
        size_t used = mr_procmem_parse_status(buf, (size_t)n, mid_line, acc);
        if (used == 0) {
            if ((size_t)n < sizeof buf)
                break;    /* the last line, without a newline */
            mid_line = 1; /* one line longer than the buffer: skip it */
            off += n;
        } else {
            mid_line = 0;
            off += (off_t)used;
        }
    }
    return acc->found == MR_STATUS_ALL ? 0 : -ENOENT;
}

void mr_procmem_read(const mr_procmem_t *pm, mr_procmem_sample_t *out)
{
    *out = (mr_procmem_sample_t){0};
    mr_status_fields_t st = {0};
    if (pm->status_fd >= 0 && read_status(pm->status_fd, &st) == 0) {
        out->split = (mr_mem_split_t){
            .anon = st.anon_kb * 1024,
            .file = st.file_kb * 1024,
            .shmem = st.shmem_kb * 1024,
        };
        out->rss = out->split.anon + out->split.file + out->split.shmem;
        out->has_split = 1;
        return;
    }
    char buf[128];
    ssize_t n = pm->statm_fd >= 0 ? pread(pm->statm_fd, buf, sizeof buf, 0) : -1;
    uint64_t resident, shared;
    if (n <= 0 || mr_procmem_parse_statm(buf, (size_t)n, &resident, &shared) < 0)
        return;
    if (shared > resident)
        shared = resident;
    out->rss = resident * pm->page_size;
    out->split = (mr_mem_split_t){
        .anon = (resident - shared) * pm->page_size,
        .file = shared * pm->page_size,
        .shmem = 0,
    };
    out->has_split = 1;
}
