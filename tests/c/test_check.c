/* test_check.c: the invariants of check.h fire in checked builds (the C tests
 * build with MR_CHECKS): a broken precondition aborts with its file, line and
 * expression, and the lock knows its holder. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ctest.h"
#include "format.h"
#include "sink.h"
#include "writer.h"

#ifndef MR_CHECKS
#error "the C tests are checked builds: build with -DMR_CHECKS"
#endif

/* Runs fn in a child with stderr captured: its exit status, and what it wrote
 * to stderr in err. */
static int in_child(void (*fn)(void *), void *arg, char *err, size_t errlen)
{
    int fds[2];
    if (pipe(fds) < 0)
        abort();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < errlen && (r = read(fds[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

static void assert_false(void *arg)
{
    int *x = arg;
    MR_ASSERT(*x == 42);
}

static void test_failed_check_aborts_and_names_itself(void)
{
    char err[512];
    int x = 41;
    int status = in_child(assert_false, &x, err, sizeof err);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(err, "test_check.c:") != NULL);
    CHECK(strstr(err, ": assert_false: check failed: *x == 42\n") != NULL);
    x = 42;
    status = in_child(assert_false, &x, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(strlen(err), 0);
}

static mr_mutex_t shared = MR_MUTEX_INITIALIZER;

static void *held_elsewhere(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)mr_mutex_held(&shared);
}

static void test_mutex_knows_its_holder(void)
{
    CHECK(!mr_mutex_held(&shared));
    mr_mutex_lock(&shared);
    CHECK(mr_mutex_held(&shared));
    pthread_t t;
    void *other = NULL;
    pthread_create(&t, NULL, held_elsewhere, NULL);
    pthread_join(t, &other);
    CHECK_EQ((intptr_t)other, 0); /* held, but not by that thread */
    mr_mutex_unlock(&shared);
    CHECK(!mr_mutex_held(&shared));
}

static void unlock_unheld(void *arg)
{
    (void)arg;
    mr_mutex_unlock(&shared);
}

static void test_unlocking_a_lock_not_held_aborts(void)
{
    char err[512];
    int status = in_child(unlock_unheld, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(err, "check failed: mr_mutex_held(mu)") != NULL);
}

typedef struct writer_case {
    const char *path;
    int take_lock;
} writer_case_t;

static void write_one(void *arg)
{
    writer_case_t *c = arg;
    mr_mutex_t lock = MR_MUTEX_INITIALIZER;
    mr_sink_t *sink;
    mr_writer_t w;
    mr_header_info_t info = {.pid = 1, .main_tid = 1};
    if (mr_sink_open_file(c->path, 1, 1, &sink) < 0 || mr_writer_init(&w, sink, &info) < 0)
        _exit(3);
    w.lock = &lock;
    if (c->take_lock)
        mr_mutex_lock(&lock);
    int rc = mr_writer_alloc(&w, 7, MR_MALLOC, 0x1000, 64, 0, 0);
    if (c->take_lock)
        mr_mutex_unlock(&lock);
    _exit(rc == 0 && mr_writer_close(&w) == 0 ? 0 : 4);
}

static void test_writer_checks_its_owners_lock(void)
{
    char path[] = "/tmp/mr-test-check-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    char err[512];
    writer_case_t c = {path, 1};
    int status = in_child(write_one, &c, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    c.take_lock = 0;
    status = in_child(write_one, &c, err, sizeof err);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(err, ": emit: check failed: w->lock == NULL || mr_mutex_held(w->lock)") != NULL);
    unlink(path);
}

int main(void)
{
    RUN(test_failed_check_aborts_and_names_itself);
    RUN(test_mutex_knows_its_holder);
    RUN(test_unlocking_a_lock_not_held_aborts);
    RUN(test_writer_checks_its_owners_lock);
    DONE();
}
