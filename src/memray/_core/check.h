/* check.h: the preconditions the comments state, checked in debug and
 * sanitizer builds (MR_CHECKS: meson's debug buildtypes and -Db_sanitize, the
 * C unit tests), compiled out of release builds, as CPython's assert() is in
 * tracemalloc. Also the lock whose holder those checks can ask about.
 *
 * A failed check writes "file:line: func: check failed: expr" with write(2)
 * (no allocation: it may fire inside an allocator hook) and aborts. */
#ifndef MR_CHECK_H
#define MR_CHECK_H

#include <pthread.h>

#ifdef MR_CHECKS
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noreturn, cold)) static inline void
mr_check_failed(const char *expr, const char *file, int line, const char *func)
{
    char num[16];
    int i = (int)sizeof num;
    num[--i] = '\0';
    do
        num[--i] = (char)('0' + line % 10);
    while ((line /= 10) > 0 && i > 0);
    const char *parts[] = {file, ":", num + i, ": ", func, ": check failed: ", expr, "\n"};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if (write(2, parts[k], strlen(parts[k])) < 0)
            break;
    abort();
}

#define MR_ASSERT(cond)                                                                            \
    (__builtin_expect(!!(cond), 1) ? (void)0 : mr_check_failed(#cond, __FILE__, __LINE__, __func__))
#else
/* Not evaluated, but still compiled: a check cannot rot in release builds. */
#define MR_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* "No locking: the caller serializes." An object that says so carries an
 * mr_serial_t; each entry point brackets its work with MR_SERIAL_ENTER and
 * MR_SERIAL_LEAVE, and a second thread inside at the same time fails the
 * check (the caller's lock was not held). Free in release builds. */
typedef struct mr_serial {
    int inside;
} mr_serial_t;

#ifdef MR_CHECKS
#define MR_SERIAL_ENTER(s) MR_ASSERT(__atomic_fetch_add(&(s)->inside, 1, __ATOMIC_ACQUIRE) == 0)
#define MR_SERIAL_LEAVE(s) ((void)__atomic_fetch_sub(&(s)->inside, 1, __ATOMIC_RELEASE))
#else
#define MR_SERIAL_ENTER(s) ((void)(s))
#define MR_SERIAL_LEAVE(s) ((void)(s))
#endif

/* A mutex that knows, in checked builds, which thread holds it, so a
 * function documented "lock held" can assert it. In a forked child the
 * forking thread keeps its pthread_t, so a lock taken in atfork_prepare reads
 * as held by the child's only thread, as it is. */
typedef struct mr_mutex {
    pthread_mutex_t m;
    pthread_t owner; /* meaningful while held */
    int held;
} mr_mutex_t;

#define MR_MUTEX_INITIALIZER                                                                       \
    {                                                                                              \
        .m = PTHREAD_MUTEX_INITIALIZER                                                             \
    }

static inline void mr_mutex_init(mr_mutex_t *mu)
{
    pthread_mutex_init(&mu->m, NULL);
    mu->held = 0;
}

/* 1 when the calling thread holds mu; only meaningful in checked builds
 * (use it inside MR_ASSERT). Another thread may take or release mu at the
 * same time: the fields are read atomically, and only this thread can make
 * the answer 1. */
static inline int mr_mutex_held(const mr_mutex_t *mu)
{
    return __atomic_load_n(&mu->held, __ATOMIC_RELAXED) &&
           pthread_equal(__atomic_load_n(&mu->owner, __ATOMIC_RELAXED), pthread_self());
}

static inline void mr_mutex_lock(mr_mutex_t *mu)
{
    pthread_mutex_lock(&mu->m);
#ifdef MR_CHECKS
    MR_ASSERT(!__atomic_load_n(&mu->held, __ATOMIC_RELAXED));
    __atomic_store_n(&mu->owner, pthread_self(), __ATOMIC_RELAXED);
    __atomic_store_n(&mu->held, 1, __ATOMIC_RELAXED);
#endif
}

static inline void mr_mutex_unlock(mr_mutex_t *mu)
{
#ifdef MR_CHECKS
    MR_ASSERT(mr_mutex_held(mu));
    __atomic_store_n(&mu->held, 0, __ATOMIC_RELAXED);
#endif
    pthread_mutex_unlock(&mu->m);
}

/* The tracker's writer lock (tracker.c): the _locked functions of pystack and
 * native assert that their caller holds it. */
int mr_tracker_lock_held(void);

#endif
