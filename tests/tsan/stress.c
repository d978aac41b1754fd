/* stress.c: the recording path under ThreadSanitizer. An embedded CPython and
 * the real hooks, tracker, writer and sinks (libmemray-tsan.so, built with
 * -fsanitize=thread like this program): many threads allocating through the
 * patched GOT, Python threads, the memory sampler at 1 ms, fork() from a
 * thread while others allocate or unwind (native stacks), dlopen while
 * tracking, a live socket sink drained by a deliberately slow reader, and
 * start/stop cycles under load.
 * Each phase reads its capture back and checks exact counts; TSan checks
 * every access. Run by `make test-tsan` (tests/tsan/README.md). */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "format.h"
#include "live.h"
#include "pystack.h"
#include "reader.h"
#include "sink.h"
#include "tracker.h"

/* Sizes the checks recognise: nothing else in the process asks for them. */
#define LEAK_SIZE 4099  /* left alive by each worker until tracking stops */
#define PY_SIZE 7001    /* _stress.marked(), called from Python threads */
#define DL_SIZE 6007    /* libstressdl.so, dlopen'ed while tracking */
#define CHILD_SIZE 5003 /* a forked child's allocations */

#define N_WORKERS 6
#define ITERS 1500
#define MMAP_EVERY 16
#define LEAKS 5
#define N_PY 2
#define PY_ITERS 300
#define DL_ROUNDS 4
#define DL_N 100
#define CHILD_N 200
#define N_CHURN 3
#define CYCLES 10
#define N_POOL 4        /* native phase: threads that unwind, never exit */
#define POOL_ITERS 4096 /* one pass over the call sites */
#define POOL_FORKS 32
#define MAX_FORKS 32

static char bindir[PATH_MAX - 64]; /* where this binary and libstressdl.so live */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Keeps the compiler from eliding a block that is never read. */
static inline void touch(void *p)
{
    if (p != NULL) {
        *(volatile char *)p = 1;
        __asm__ volatile("" : : "r"(p) : "memory");
    }
}

static void path_in_bindir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", bindir, name);
}

/* ---- the embedded interpreter's _stress module ---------------------------- */

/* Thread ids of the Python threads that called marked(): GIL. */
static uint32_t py_tids[64];
static int n_py_tids;

/* marked(release): one malloc/free of PY_SIZE bytes, with the GIL released
 * when release is true (the stack walk must then still see the thread's own
 * frames). */
static PyObject *stress_marked(PyObject *self, PyObject *arg)
{
    (void)self;
    int release = PyObject_IsTrue(arg);
    uint32_t tid = mr_tracker_gettid();
    int known = 0;
    for (int i = 0; i < n_py_tids; i++)
        known |= py_tids[i] == tid;
    if (!known && n_py_tids < 64)
        py_tids[n_py_tids++] = tid;
    char *p;
    if (release) {
        Py_BEGIN_ALLOW_THREADS p = malloc(PY_SIZE);
        touch(p);
        free(p);
        Py_END_ALLOW_THREADS
    } else {
        p = malloc(PY_SIZE);
        touch(p);
        free(p);
    }
    Py_RETURN_NONE;
}

static PyMethodDef stress_methods[] = {
    {"marked", stress_marked, METH_O, "One malloc/free of PY_SIZE bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stress_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_stress",
    .m_size = -1,
    .m_methods = stress_methods,
};

static PyObject *init_stress_module(void)
{
    return PyModule_Create(&stress_module);
}

static const char py_setup[] = "import threading, _stress\n"
                               "def py_worker(n):\n"
                               "    keep = []\n"
                               "    for i in range(n):\n"
                               "        _stress.marked(i % 2)\n"
                               "        keep.append(bytes(64 + i % 200))\n"
                               "        keep.append([i] * (i % 30))\n"
                               "        if len(keep) > 100:\n"
                               "            keep.clear()\n"
                               "churn_stop = False\n"
                               "def py_churn():\n"
                               "    i = 0\n"
                               "    while not churn_stop:\n"
                               "        _stress.marked(i % 2)\n"
                               "        keep = [bytes(i % 300) for _ in range(20)]\n"
                               "        i += 1\n";

static int py_run(const char *code)
{
    return PyRun_SimpleString(code);
}

static int is_py_tid(uint32_t tid)
{
    for (int i = 0; i < n_py_tids; i++)
        if (py_tids[i] == tid)
            return 1;
    return 0;
}

/* ---- a set of live addresses, to check the ordering rule ------------------ */

/* Open addressing with backward-shift deletion; 0 is never an address. */
typedef struct addrset {
    uint64_t *slot;
    size_t mask, n;
} addrset_t;

static size_t addr_hash(uint64_t a, size_t mask)
{
    a ^= a >> 33;
    a *= 0xff51afd7ed558ccdULL;
    a ^= a >> 33;
    return (size_t)a & mask;
}

/* 1 when a was already in the set. */
static int addrset_add(addrset_t *s, uint64_t a)
{
    size_t i = addr_hash(a, s->mask);
    while (s->slot[i] != 0) {
        if (s->slot[i] == a)
            return 1;
        i = (i + 1) & s->mask;
    }
    if (s->n * 4 < s->mask * 3) {
        s->slot[i] = a;
        s->n++;
    }
    return 0;
}

static void addrset_del(addrset_t *s, uint64_t a)
{
    size_t i = addr_hash(a, s->mask);
    while (s->slot[i] != a) {
        if (s->slot[i] == 0)
            return;
        i = (i + 1) & s->mask;
    }
    s->slot[i] = 0;
    s->n--;
    for (size_t j = (i + 1) & s->mask; s->slot[j] != 0; j = (j + 1) & s->mask) {
        size_t home = addr_hash(s->slot[j], s->mask);
        /* Move the entry at j into the hole at i if its home does not lie
         * cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->slot[i] = s->slot[j];
            s->slot[j] = 0;
            i = j;
        }
    }
}

/* ---- reading a capture back ----------------------------------------------- */

typedef struct worker worker_t;

typedef struct tally {
    uint64_t alloc[16], free[16]; /* by allocator */
} tally_t;

typedef struct capture_check {
    /* in */
    const worker_t *workers;
    int n_workers;
    uint32_t dl_tid, child_tid;
    const char *py_function; /* expected innermost frame of PY_SIZE blocks */
    /* out */
    tally_t w[N_WORKERS];
    uint64_t py_marked, py_marked_stack_ok, dl_allocs, child_allocs;
    uint64_t no_native; /* workers' and the child's ALLOCs without a native stack */
    int native;         /* the header says native stacks were recorded */
    uint64_t memory, allocs, aggs, reused_live; /* reused_live: ordering violations */
    mr_end_t end;
    int error;
    char errbuf[MR_READER_ERRLEN];
    int has_trailer;
    uint64_t trailer_allocs;
    char names[N_WORKERS][16];
} capture_check_t;

struct worker {
    int index;
    pthread_t thread;
    uint32_t tid;
    int iters;
    int fork_every;  /* forks at the middle of every fork_every iterations; 0: never
                      * (pool_main: nonzero makes it the thread that forks) */
    int child_stops; /* the child calls mr_tracker_stop before _exit */
    int n_children;
    pid_t children[MAX_FORKS];
    int child_status[MAX_FORKS];
    void *leaks[LEAKS];
};

static int worker_of(const capture_check_t *c, uint32_t tid)
{
    for (int i = 0; i < c->n_workers; i++)
        if (c->workers[i].tid == tid)
            return i;
    return -1;
}

static int read_capture(const char *path, capture_check_t *c)
{
    mr_reader_t *r = NULL;
    char err[MR_READER_ERRLEN] = "";
    int rc = mr_reader_open(&r, path, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return rc;
    }
    addrset_t live = {calloc((size_t)1 << 22, sizeof(uint64_t)), ((size_t)1 << 22) - 1, 0};
    if (live.slot == NULL) {
        mr_reader_close(r);
        return -ENOMEM;
    }
    c->native = (mr_reader_header(r)->flags & MR_FLAG_NATIVE) != 0;
    mr_event_t ev;
    while ((rc = mr_reader_next(r, &ev)) > 0) {
        int w = (ev.type == MR_REC_ALLOC || ev.type == MR_REC_FREE) ? worker_of(c, ev.tid) : -1;
        switch (ev.type) {
        case MR_REC_ALLOC:
            c->allocs++;
            if (w >= 0)
                c->w[w].alloc[ev.allocator & 15]++;
            if (ev.allocator != MR_MMAP && addrset_add(&live, ev.addr)) {
                if (c->reused_live++ < 5)
                    fprintf(stderr, "%s: 0x%llx allocated again (tid %u, allocator %u) at %llu\n",
                            path, (unsigned long long)ev.addr, ev.tid, ev.allocator,
                            (unsigned long long)ev.offset);
            }
            if (ev.size == PY_SIZE && is_py_tid(ev.tid)) {
                c->py_marked++;
                mr_pyframe_loc_t f[4];
                size_t n = mr_reader_stack(r, ev.stack, f, 4);
                if (n > 0 && c->py_function != NULL && strcmp(f[0].function, c->py_function) == 0)
                    c->py_marked_stack_ok++;
            }
            if (ev.size == DL_SIZE && ev.tid == c->dl_tid)
                c->dl_allocs++;
            if (ev.size == CHILD_SIZE && ev.tid == c->child_tid)
                c->child_allocs++;
            if ((w >= 0 || ev.tid == c->child_tid) && ev.native == 0)
                c->no_native++;
            break;
        case MR_REC_FREE:
            if (w >= 0)
                c->w[w].free[ev.allocator & 15]++;
            if (ev.allocator != MR_MUNMAP)
                addrset_del(&live, ev.addr);
            break;
        case MR_REC_MEMORY:
            c->memory++;
            break;
        case MR_REC_AGG:
            c->aggs++;
            break;
        default:
            break;
        }
    }
    c->error = rc;
    snprintf(c->errbuf, sizeof c->errbuf, "%s", rc < 0 ? mr_reader_error(r) : "");
    c->end = mr_reader_end(r);
    const mr_trailer_t *t = mr_reader_trailer(r);
    c->has_trailer = t != NULL;
    c->trailer_allocs = t ? t->total_allocs : 0;
    for (int i = 0; i < c->n_workers; i++) {
        size_t len = 0;
        const char *name = mr_reader_thread_name(r, c->workers[i].tid, &len);
        snprintf(c->names[i], sizeof c->names[i], "%.*s", name ? (int)len : 0, name ? name : "");
    }
    free(live.slot);
    mr_reader_close(r);
    if (c->error < 0)
        fprintf(stderr, "%s: %s\n", path, c->errbuf);
    return 0;
}

/* ---- C worker threads ------------------------------------------------------ */

static size_t malloc_size(int w)
{
    return 1024 + 16 * (size_t)w;
}

/* glibc's own dlopen and dlclose change the list of loaded objects under the
 * lock that dl_iterate_phdr takes, and a fork landing then leaves it held in
 * the child, memray or not (glibc resets only its other loader lock). So the
 * stress program never forks during its own dlopen or dlclose; a fork during
 * memray's patch passes and unwinds is what it tests. */
static pthread_mutex_t loader_mu = PTHREAD_MUTEX_INITIALIZER;

static void *dlopen_unforked(const char *path)
{
    pthread_mutex_lock(&loader_mu);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    pthread_mutex_unlock(&loader_mu);
    return h;
}

static void dlclose_unforked(void *h)
{
    pthread_mutex_lock(&loader_mu);
    dlclose(h);
    pthread_mutex_unlock(&loader_mu);
}

static pid_t fork_outside_dlopen(void)
{
    pthread_mutex_lock(&loader_mu);
    pid_t pid = fork();
    pthread_mutex_unlock(&loader_mu);
    return pid;
}

/* waitpid, but a child that has not ended within 30 s is killed and counts
 * as failed (status 0x7f00: "exited 127"), so a hang in a child fails the
 * test instead of stalling it. */
static void wait_child(pid_t pid, int *status)
{
    for (int ms = 0; ms < 30000; ms += 10) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid || got < 0)
            return;
        sleep_us(10000);
    }
    fprintf(stderr, "child %d still running after 30 s: killed\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    *status = 127 << 8;
}

/* In a forked child (its only thread): records a little, stops tracking (or
 * not) and leaves with _exit. */
static void child_main(int stops)
{
    for (int i = 0; i < CHILD_N; i++) {
        char *p = malloc(CHILD_SIZE);
        touch(p);
        free(p);
    }
    /* Not mr_tracker_after_fork_in_child(): TSan cannot start a thread after
     * a multithreaded fork (it keeps the parent's threads, and a new one that
     * gets a gone thread's id stops it: "dup thread"). */
    sleep_us(5000);
    for (int i = 0; i < CHILD_N; i++) {
        char *p = malloc(CHILD_SIZE);
        touch(p);
        free(p);
    }
    int rc = stops ? mr_tracker_stop() : 0;
    _exit(rc == 0 ? 0 : 10);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char name[16];
    w->tid = mr_tracker_gettid();
    snprintf(name, sizeof name, "mrw-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    size_t size = malloc_size(w->index);
    for (int i = 0; i < w->iters; i++) {
        char *a = malloc(size);
        char *b = calloc(3, 100 + (size_t)w->index);
        touch(a);
        touch(b);
        char *c = realloc(a, 2 * size);
        touch(c);
        free(b);
        free(c);
        if (i % MMAP_EVERY == 0) {
            char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m != MAP_FAILED) {
                touch(m);
                munmap(m, 8192);
            }
        }
        if (w->fork_every > 0 && i % w->fork_every == w->fork_every / 2 &&
            w->n_children < MAX_FORKS) {
            pid_t pid = fork_outside_dlopen();
            if (pid == 0)
                child_main(w->child_stops);
            w->children[w->n_children++] = pid;
        }
    }
    for (int k = 0; k < LEAKS; k++) {
        w->leaks[k] = malloc(LEAK_SIZE);
        touch(w->leaks[k]);
    }
    for (int k = 0; k < w->n_children; k++)
        if (w->children[k] > 0)
            wait_child(w->children[k], &w->child_status[k]);
    return NULL;
}

static void start_workers(worker_t *ws, int fork_worker, int child_stops)
{
    for (int i = 0; i < N_WORKERS; i++) {
        ws[i] = (worker_t){.index = i, .iters = ITERS};
        ws[i].fork_every = i == fork_worker ? ITERS : 0;
        ws[i].child_stops = child_stops;
        CHECK_EQ(pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]), 0);
    }
}

static int child_ok(const worker_t *w, int k)
{
    return w->children[k] > 0 && WIFEXITED(w->child_status[k]) &&
           WEXITSTATUS(w->child_status[k]) == 0;
}

static void join_workers(worker_t *ws)
{
    for (int i = 0; i < N_WORKERS; i++)
        pthread_join(ws[i].thread, NULL);
}

static void free_leaks(worker_t *ws, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < LEAKS; k++)
            free(ws[i].leaks[k]);
}

/* Every worker's events are in the capture, exactly. */
static void check_workers(const capture_check_t *c, const worker_t *ws, int n)
{
    for (int i = 0; i < n; i++) {
        const tally_t *t = &c->w[i];
        const int iters = ws[i].iters;
        const int mmaps = (iters + MMAP_EVERY - 1) / MMAP_EVERY;
        CHECK_EQ(t->alloc[MR_MALLOC], iters + LEAKS);
        CHECK_EQ(t->alloc[MR_CALLOC], iters);
        CHECK_EQ(t->alloc[MR_REALLOC], iters);
        CHECK_EQ(t->alloc[MR_MMAP], mmaps);
        CHECK_EQ(t->free[MR_FREE], 3 * iters);
        CHECK_EQ(t->free[MR_MUNMAP], mmaps);
        char want[16];
        snprintf(want, sizeof want, "mrw-%d", ws[i].index);
        CHECK(strcmp(c->names[i], want) == 0);
    }
}

/* ---- dlopen while tracking -------------------------------------------------- */

typedef struct dl_state {
    pthread_t thread;
    uint32_t tid;
    int made;
} dl_state_t;

static void *dl_main(void *arg)
{
    dl_state_t *d = arg;
    char path[PATH_MAX];
    path_in_bindir(path, sizeof path, "libstressdl.so");
    d->tid = mr_tracker_gettid();
    for (int round = 0; round < DL_ROUNDS; round++) {
        void *h = dlopen_unforked(path);
        if (h == NULL) {
            fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
            return NULL;
        }
        int (*fn)(int, size_t) = (int (*)(int, size_t))dlsym(h, "stressdl_alloc");
        if (fn != NULL)
            d->made += fn(DL_N, DL_SIZE);
        dlclose_unforked(h);
    }
    return NULL;
}

/* ---- phase 1: a file capture with everything at once ------------------------ */

static void test_file_capture_threads_fork_dlopen_sampler(void)
{
    char path[PATH_MAX], child_path[PATH_MAX + 32];
    path_in_bindir(path, sizeof path, "stress-file.bin");
    n_py_tids = 0;
    mr_pystack_set_boundary(NULL, mr_tracker_gettid());
    mr_tracker_options_t opts = {
        .path = path,
        .overwrite = 1,
        .follow_fork = 1,
        .interval_ms = 1,
        .command_line = "stress file",
    };
    CHECK_EQ(mr_tracker_start(&opts), 0);
    static worker_t ws[N_WORKERS];
    start_workers(ws, 0, 1);
    dl_state_t dl = {0};
    CHECK_EQ(pthread_create(&dl.thread, NULL, dl_main, &dl), 0);
    char code[256];
    snprintf(code, sizeof code,
             "pys = [threading.Thread(target=py_worker, args=(%d,)) for _ in range(%d)]\n"
             "for t in pys: t.start()\n",
             PY_ITERS, N_PY);
    CHECK_EQ(py_run(code), 0);
    PyThreadState *ts = PyEval_SaveThread();
    join_workers(ws);
    pthread_join(dl.thread, NULL);
    PyEval_RestoreThread(ts);
    CHECK_EQ(py_run("for t in pys: t.join()\n"), 0);
    CHECK_EQ(mr_tracker_stop(), 0);
    mr_pystack_release_code_refs();
    free_leaks(ws, N_WORKERS);

    capture_check_t c = {.workers = ws, .n_workers = N_WORKERS, .dl_tid = dl.tid};
    c.py_function = "py_worker";
    CHECK_EQ(read_capture(path, &c), 0);
    CHECK_EQ(c.error, 0);
    CHECK_EQ(c.end, MR_END_TRAILER);
    CHECK(c.has_trailer);
    CHECK_EQ(c.trailer_allocs, c.allocs);
    CHECK_EQ(c.reused_live, 0);
    CHECK(c.memory >= 2);
    check_workers(&c, ws, N_WORKERS);
    CHECK_EQ(n_py_tids, N_PY);
    CHECK_EQ(c.py_marked, N_PY * PY_ITERS);
    CHECK_EQ(c.py_marked_stack_ok, N_PY * PY_ITERS);
    CHECK_EQ(dl.made, DL_ROUNDS * DL_N);
    CHECK_EQ(c.dl_allocs, DL_ROUNDS * DL_N);

    /* The child followed the fork into <path>.<pid>; its one thread's id is
     * its pid. */
    CHECK_EQ(ws[0].n_children, 1);
    CHECK(child_ok(&ws[0], 0));
    snprintf(child_path, sizeof child_path, "%s.%d", path, (int)ws[0].children[0]);
    capture_check_t cc = {.child_tid = (uint32_t)ws[0].children[0]};
    CHECK_EQ(read_capture(child_path, &cc), 0);
    CHECK_EQ(cc.error, 0);
    CHECK_EQ(cc.end, MR_END_TRAILER);
    CHECK_EQ(cc.child_allocs, 2 * CHILD_N);
    CHECK_EQ(cc.reused_live, 0);
    CHECK(cc.memory >= 2);
    unlink(child_path);
    unlink(path);
}

/* ---- phase 2: a live socket sink with a slow reader --------------------------- */

/* Copies the tracker's stream to the live reader in small chunks with pauses:
 * the socket fills up and the tracker's sends wait (with its writer lock
 * held) while everyone else allocates. */
typedef struct relay {
    pthread_t thread;
    int from, to;
    uint64_t bytes;
} relay_t;

static void *relay_main(void *arg)
{
    relay_t *r = arg;
    mr_tracker_guard = 1; /* the profiler's side: nothing here is recorded */
    char buf[1500];
    for (unsigned long n = 1;; n++) {
        ssize_t got = recv(r->from, buf, sizeof buf, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (ssize_t off = 0; off < got;) {
            ssize_t w = write(r->to, buf + off, (size_t)(got - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
        r->bytes += (uint64_t)got;
        sleep_us(n % 128 == 0 ? 20000 : 50);
    }
out:
    shutdown(r->to, SHUT_WR); /* the live reader sees the end */
    return NULL;
}

/* Looks at the live set while it is being built, now and then holding the
 * lock for a while (a slow UI). */
typedef struct poller {
    pthread_t thread;
    mr_live_t *live;
    uint32_t tid; /* a thread whose name it looks up */
    int done;     /* atomic */
    unsigned long looks;
} poller_t;

static void *poller_main(void *arg)
{
    poller_t *p = arg;
    mr_tracker_guard = 1;
    while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
        mr_live_lock(p->live);
        mr_live_status_t st;
        char msg[128];
        mr_live_status_locked(p->live, &st, msg, sizeof msg);
        if (p->looks % 8 == 0) {
            mr_agg_row_t *rows = NULL;
            size_t n = 0;
            if (mr_live_rows_locked(p->live, p->looks % 16 == 0, &rows, &n) == 0)
                free(rows);
            size_t len;
            mr_reader_thread_name(mr_live_reader_locked(p->live), p->tid, &len);
        }
        if (p->looks % 32 == 0)
            sleep_us(3000);
        mr_live_unlock(p->live);
        p->looks++;
        sleep_us(500);
    }
    return NULL;
}

static void test_live_socket_slow_reader(void)
{
    int lfd = -1, client = -1, sp[2];
    unsigned port = 0;
    mr_sink_t *sink = NULL;
    CHECK_EQ(mr_sink_socket_listen("127.0.0.1", 0, &lfd, &port), 0);
    CHECK_EQ(mr_live_connect("127.0.0.1", port, 5000, &client), 0);
    int small = 4096;
    setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK_EQ(mr_sink_socket_accept(lfd, 5000, &sink), 0);
    close(lfd);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    if (sink == NULL)
        return;

    n_py_tids = 0;
    mr_tracker_options_t opts = {
        .path = "<live>",
        .interval_ms = 1,
        .command_line = "stress live",
        .sink = sink,
    };
    CHECK_EQ(mr_tracker_start(&opts), 0);
    relay_t relay = {.from = client, .to = sp[0]};
    CHECK_EQ(pthread_create(&relay.thread, NULL, relay_main, &relay), 0);
    mr_live_t *live = NULL;
    char err[256] = "";
    int rc = mr_live_open(&live, sp[1], 10000, err, sizeof err);
    CHECK_EQ(rc, 0);
    if (rc < 0) {
        fprintf(stderr, "mr_live_open: %s\n", err);
        mr_tracker_stop();
        pthread_join(relay.thread, NULL);
        return;
    }
    static worker_t ws[N_WORKERS];
    poller_t poller = {.live = live, .tid = mr_tracker_gettid()};
    /* A child that does not follow the fork: it drops its copy of the
     * connection and records nothing. */
    start_workers(ws, 1, 1);
    CHECK_EQ(pthread_create(&poller.thread, NULL, poller_main, &poller), 0);
    char code[256];
    snprintf(code, sizeof code,
             "pys = [threading.Thread(target=py_worker, args=(%d,)) for _ in range(%d)]\n"
             "for t in pys: t.start()\n",
             PY_ITERS, N_PY);
    CHECK_EQ(py_run(code), 0);
    PyThreadState *ts = PyEval_SaveThread();
    join_workers(ws);
    PyEval_RestoreThread(ts);
    CHECK_EQ(py_run("for t in pys: t.join()\n"), 0);
    CHECK_EQ(mr_tracker_stop(), 0);
    mr_pystack_release_code_refs();
    free_leaks(ws, N_WORKERS);
    pthread_join(relay.thread, NULL);

    /* The stream ends with the trailer; wait for the reader to get there. */
    mr_live_status_t st = {0};
    for (int i = 0; i < 30000; i++) {
        mr_live_lock(live);
        mr_live_status_locked(live, &st, NULL, 0);
        mr_live_unlock(live);
        if (!st.active)
            break;
        sleep_us(1000);
    }
    __atomic_store_n(&poller.done, 1, __ATOMIC_RELEASE);
    pthread_join(poller.thread, NULL);
    CHECK_EQ(st.active, 0);
    CHECK_EQ(st.end, MR_END_TRAILER);
    CHECK_EQ(st.error, 0);
    CHECK(st.rss > 0);
    CHECK(poller.looks > 0);
    mr_live_lock(live);
    const mr_trailer_t *t = mr_reader_trailer(mr_live_reader_locked(live));
    CHECK(t != NULL);
    CHECK_EQ(t ? t->total_allocs : 0, st.n_allocs);
    /* What each worker left alive is exactly its leaks. */
    mr_agg_row_t *rows = NULL;
    size_t n = 0;
    CHECK_EQ(mr_live_rows_locked(live, 0, &rows, &n), 0);
    for (int i = 0; i < N_WORKERS; i++) {
        uint64_t leak_n = 0, leak_bytes = 0;
        for (size_t k = 0; k < n; k++)
            if (rows[k].key.tid == ws[i].tid) {
                leak_n += rows[k].leak_n;
                leak_bytes += rows[k].leak_bytes;
            }
        CHECK_EQ(leak_n, LEAKS);
        CHECK_EQ(leak_bytes, LEAKS * LEAK_SIZE);
    }
    free(rows);
    mr_live_unlock(live);
    mr_live_destroy(live);
    close(client);
    close(sp[0]);
    CHECK(relay.bytes > 0);
    CHECK_EQ(ws[1].n_children, 1);
    CHECK(child_ok(&ws[1], 0));
}

/* ---- phase 3: native stacks, forks landing during unwinds ------------------- */

/* Distinct call sites for the native pool: libunwind looks a return address
 * up in the loaded objects (dl_iterate_phdr, under the loader's lock) the
 * first time a thread unwinds through it, so allocating through a new site
 * each time keeps the other threads inside dl_iterate_phdr while one forks.
 * N_SITES functions site_10000 ... site_17777, numbered in octal digits. */
static __attribute__((noinline)) void *site_alloc(size_t size, int site)
{
    void *p = malloc(size);
    __asm__ volatile("" : : "r"(site) : "memory");
    return p;
}

/* (clang-format cannot lay out these generators stably.) */
/* clang-format off */
#define SITE(n)                                                                \
    static __attribute__((noinline)) void *site_##n(size_t size)               \
    {                                                                          \
        void *p = site_alloc(size, n);                                         \
        __asm__ volatile("" : : "r"(p) : "memory");                            \
        return p;                                                              \
    }
#define SITES8(a) SITE(a##0) SITE(a##1) SITE(a##2) SITE(a##3) \
    SITE(a##4) SITE(a##5) SITE(a##6) SITE(a##7)
#define SITES64(a) SITES8(a##0) SITES8(a##1) SITES8(a##2) SITES8(a##3) \
    SITES8(a##4) SITES8(a##5) SITES8(a##6) SITES8(a##7)
#define SITES512(a) SITES64(a##0) SITES64(a##1) SITES64(a##2) SITES64(a##3) \
    SITES64(a##4) SITES64(a##5) SITES64(a##6) SITES64(a##7)
#define SITES4096(a) SITES512(a##0) SITES512(a##1) SITES512(a##2) SITES512(a##3) \
    SITES512(a##4) SITES512(a##5) SITES512(a##6) SITES512(a##7)
SITES4096(1)
#define REF(n) site_##n,
#define REFS8(a) REF(a##0) REF(a##1) REF(a##2) REF(a##3) \
    REF(a##4) REF(a##5) REF(a##6) REF(a##7)
#define REFS64(a) REFS8(a##0) REFS8(a##1) REFS8(a##2) REFS8(a##3) \
    REFS8(a##4) REFS8(a##5) REFS8(a##6) REFS8(a##7)
#define REFS512(a) REFS64(a##0) REFS64(a##1) REFS64(a##2) REFS64(a##3) \
    REFS64(a##4) REFS64(a##5) REFS64(a##6) REFS64(a##7)
#define REFS4096(a) REFS512(a##0) REFS512(a##1) REFS512(a##2) REFS512(a##3) \
    REFS512(a##4) REFS512(a##5) REFS512(a##6) REFS512(a##7)
static void *(*const sites[])(size_t) = {REFS4096(1)};
/* clang-format on */
#define N_SITES (sizeof sites / sizeof sites[0])

/* Threads that unwind (libunwind) never exit here: libunwind frees its
 * per-thread trace cache in the last round of thread-exit destructors, after
 * gcc's TSan has torn the thread down, and TSan's own mutex interceptor then
 * crashes (a libunwind/TSan clash, not ours; tests/tsan/README.md). So this
 * pool's threads park for good once done, and the process exits with them. */
static pthread_barrier_t pool_done;

/* Pool threads: thread 0 forks POOL_FORKS times, a millisecond apart, while
 * the others allocate through call sites they have not unwound through yet,
 * each once. */
static pthread_barrier_t pool_go;

static void *pool_main(void *arg)
{
    worker_t *w = arg;
    w->tid = mr_tracker_gettid();
    pthread_barrier_wait(&pool_go);
    if (w->fork_every > 0) {
        for (int k = 0; k < POOL_FORKS; k++) {
            pid_t pid = fork_outside_dlopen();
            if (pid == 0)
                child_main(w->child_stops);
            w->children[w->n_children++] = pid;
            sleep_us(1000);
        }
    } else {
        for (int i = 0; i < w->iters; i++) {
            size_t site = ((size_t)i + (size_t)w->index * (N_SITES / N_POOL)) % N_SITES;
            char *p = sites[site](malloc_size(w->index));
            touch(p);
            free(p);
        }
    }
    for (int k = 0; k < LEAKS; k++) {
        w->leaks[k] = malloc(LEAK_SIZE);
        touch(w->leaks[k]);
    }
    for (int k = 0; k < w->n_children; k++)
        if (w->children[k] > 0)
            wait_child(w->children[k], &w->child_status[k]);
    pthread_barrier_wait(&pool_done);
    for (;;)
        pause();
    return NULL;
}

static void test_native_pool_forks(void)
{
    char path[PATH_MAX], child_path[PATH_MAX + 32];
    path_in_bindir(path, sizeof path, "stress-native.bin");
    mr_tracker_options_t opts = {
        .path = path,
        .overwrite = 1,
        .native = 1,
        .follow_fork = 1,
        .interval_ms = 1,
        .command_line = "stress native",
    };
    CHECK_EQ(mr_tracker_start(&opts), 0);
    static worker_t ws[N_POOL];
    pthread_barrier_init(&pool_go, NULL, N_POOL);
    pthread_barrier_init(&pool_done, NULL, N_POOL + 1);
    for (int i = 0; i < N_POOL; i++) {
        /* Thread 0 forks while the others unwind: each child writes its
         * MAPPINGS and unwinds its own allocations (both walk the loader's
         * list of objects). */
        ws[i] = (worker_t){.index = i, .iters = i == 0 ? 0 : POOL_ITERS, .fork_every = i == 0};
        ws[i].child_stops = 1;
        CHECK_EQ(pthread_create(&ws[i].thread, NULL, pool_main, &ws[i]), 0);
    }
    PyThreadState *ts = PyEval_SaveThread();
    pthread_barrier_wait(&pool_done);
    PyEval_RestoreThread(ts);
    CHECK_EQ(mr_tracker_stop(), 0);
    mr_pystack_release_code_refs();
    free_leaks(ws, N_POOL);

    capture_check_t c = {.workers = ws, .n_workers = N_POOL};
    CHECK_EQ(read_capture(path, &c), 0);
    CHECK_EQ(c.error, 0);
    CHECK_EQ(c.end, MR_END_TRAILER);
    CHECK(c.native);
    CHECK_EQ(c.reused_live, 0);
    CHECK_EQ(c.no_native, 0);
    for (int i = 0; i < N_POOL; i++) {
        CHECK_EQ(c.w[i].alloc[MR_MALLOC], ws[i].iters + LEAKS);
        CHECK_EQ(c.w[i].free[MR_FREE], ws[i].iters);
    }
    CHECK_EQ(ws[0].n_children, POOL_FORKS);
    for (int k = 0; k < ws[0].n_children; k++) {
        CHECK(child_ok(&ws[0], k));
        snprintf(child_path, sizeof child_path, "%s.%d", path, (int)ws[0].children[k]);
        capture_check_t cc = {.child_tid = (uint32_t)ws[0].children[k]};
        CHECK_EQ(read_capture(child_path, &cc), 0);
        CHECK_EQ(cc.error, 0);
        CHECK_EQ(cc.end, MR_END_TRAILER);
        CHECK(cc.native);
        CHECK_EQ(cc.child_allocs, 2 * CHILD_N);
        CHECK_EQ(cc.no_native, 0);
        unlink(child_path);
    }
    unlink(path);
}

/* ---- phase 4: start/stop cycles while threads allocate all along ------------ */

typedef struct churn {
    pthread_t thread;
    int index;
    int stop; /* atomic */
    unsigned long rounds;
    int forks, bad_children;
} churn_t;

static int count_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    ++*(int *)data;
    return 0;
}

static void *churn_main(void *arg)
{
    churn_t *c = arg;
    char dl_path[PATH_MAX];
    path_in_bindir(dl_path, sizeof dl_path, "libstressdl.so");
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 50; i++) {
            char *a = malloc(64 + (size_t)i);
            touch(a);
            a = realloc(a, 4096);
            touch(a);
            free(a);
            void *p = NULL;
            if (posix_memalign(&p, 64, 256) == 0) {
                touch(p);
                free(p);
            }
        }
        char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            touch(m);
            munmap(m, 4096);
        }
        switch (c->index) {
        case 0: {
            char name[16];
            snprintf(name, sizeof name, "churn-%lu", c->rounds % 100);
            pthread_setname_np(pthread_self(), name);
            mr_tracker_set_greenlet_tid(c->rounds % 3 ? 0 : 100000 + (uint32_t)c->rounds);
            break;
        }
        case 1: {
            void *h = dlopen_unforked(dl_path);
            if (h != NULL) {
                int (*fn)(int, size_t) = (int (*)(int, size_t))dlsym(h, "stressdl_alloc");
                if (fn != NULL)
                    fn(10, 100);
                dlclose_unforked(h);
            }
            break;
        }
        case 2:
            if (c->rounds % 40 == 0) {
                /* A child forked at any point of a start, a stop or a
                 * dlopen (all of which patch GOTs inside dl_iterate_phdr):
                 * it allocates, walks the loaded objects as its own dlopen
                 * or its tracker's stop would, and leaves. */
                pid_t pid = fork_outside_dlopen();
                if (pid == 0) {
                    for (int i = 0; i < 20; i++) {
                        char *p = malloc(CHILD_SIZE);
                        touch(p);
                        free(p);
                    }
                    int n = 0;
                    dl_iterate_phdr(count_object, &n);
                    _exit(n > 0 ? 0 : 3);
                }
                int status = 0;
                if (pid > 0) {
                    wait_child(pid, &status);
                    c->forks++;
                    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        c->bad_children++;
                }
            }
            break;
        default:
            break;
        }
        c->rounds++;
    }
    return NULL;
}

static void test_start_stop_cycles_under_load(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    path_in_bindir(dir, sizeof dir, "cycles");
    mkdir(dir, 0755);
    n_py_tids = 0;
    churn_t churn[N_CHURN];
    for (int i = 0; i < N_CHURN; i++) {
        churn[i] = (churn_t){.index = i};
        CHECK_EQ(pthread_create(&churn[i].thread, NULL, churn_main, &churn[i]), 0);
    }
    CHECK_EQ(py_run("churn_stop = False\n"
                    "pyc = threading.Thread(target=py_churn)\n"
                    "pyc.start()\n"),
             0);
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        snprintf(path, sizeof path, "%s/cycle-%d.bin", dir, cycle);
        /* Not native: these threads exit (see test_native_pool_forks). */
        int kind = cycle % 5;
        mr_tracker_options_t opts = {
            .path = path,
            .overwrite = 1,
            .buffered = kind == 1,
            .aggregated = kind == 2,
            .trace_pymalloc = kind == 3,
            .compress = kind == 4,
            .follow_fork = cycle % 2,
            .interval_ms = 1,
            .command_line = "stress cycles",
        };
        mr_pystack_set_boundary(NULL, mr_tracker_gettid());
        CHECK_EQ(mr_tracker_start(&opts), 0);
        PyThreadState *ts = PyEval_SaveThread();
        sleep_us(15000 + 5000 * (cycle % 3));
        PyEval_RestoreThread(ts);
        CHECK_EQ(mr_tracker_stop(), 0);
        mr_pystack_release_code_refs();
        capture_check_t c = {.py_function = "py_churn"};
        CHECK_EQ(read_capture(path, &c), 0);
        CHECK_EQ(c.error, 0);
        CHECK_EQ(c.end, MR_END_TRAILER);
        CHECK(kind == 2 ? c.aggs > 0 : c.allocs > 0);
        if (kind != 2)
            CHECK_EQ(c.trailer_allocs, c.allocs);
        CHECK_EQ(c.reused_live, 0);
        CHECK_EQ(c.py_marked_stack_ok, c.py_marked);
        /* Let the program run untracked for a moment, too. */
        ts = PyEval_SaveThread();
        sleep_us(2000);
        PyEval_RestoreThread(ts);
    }
    CHECK_EQ(py_run("churn_stop = True\npyc.join()\n"), 0);
    PyThreadState *ts = PyEval_SaveThread();
    for (int i = 0; i < N_CHURN; i++) {
        __atomic_store_n(&churn[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(churn[i].thread, NULL);
    }
    PyEval_RestoreThread(ts);
    CHECK(churn[0].rounds > 0 && churn[1].rounds > 0 && churn[2].rounds > 0);
    CHECK(churn[2].forks > 0);
    CHECK_EQ(churn[2].bad_children, 0);
    /* The churn's followed children left captures here; they are not read. */
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

/* Runs the phases named on the command line (file, live, native, cycles), or
 * all of them. */
static int wanted(int argc, char **argv, const char *phase)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], phase) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
    if (n <= 0)
        return 2;
    bindir[n] = '\0';
    *strrchr(bindir, '/') = '\0';
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (PyImport_AppendInittab("_stress", init_stress_module) < 0)
        return 2;
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    PyStatus status = PyConfig_SetBytesString(&config, &config.home, STRESS_PYTHON_HOME);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "cannot start Python: %s\n", status.err_msg ? status.err_msg : "?");
        return 2;
    }
    if (py_run(py_setup) < 0)
        return 2;

    if (wanted(argc, argv, "file")) {
        printf("== file capture: threads, Python threads, fork, dlopen, sampler\n");
        RUN(test_file_capture_threads_fork_dlopen_sampler);
    }
    if (wanted(argc, argv, "live")) {
        printf("== live socket sink, slow reader\n");
        RUN(test_live_socket_slow_reader);
    }
    if (wanted(argc, argv, "native")) {
        printf("== native stacks, forks during unwinds\n");
        RUN(test_native_pool_forks);
    }
    if (wanted(argc, argv, "cycles")) {
        printf("== start/stop cycles under load\n");
        RUN(test_start_stop_cycles_under_load);
    }

    if (Py_FinalizeEx() < 0)
        ctest_failed++;
    DONE();
}
