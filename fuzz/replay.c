/* replay.c: runs a fuzz harness once on every file of the directories (or
 * the files) given, without libFuzzer: `make test` builds it with the
 * ordinary compiler against the same harness source and replays the seed
 * corpus and every saved crash input, so a bug once found stays fixed. A
 * crash, a sanitizer report, a failed check in the harness or an input that
 * runs longer than REPLAY_TIMEOUT seconds ends it with a non-zero status and
 * names the input. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_SANITIZED 1
#endif
#endif
#ifdef REPLAY_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

/* Per input; the slowest seed takes milliseconds. */
#define REPLAY_TIMEOUT 20

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char current[4096]; /* the input being run, for the failure message */

static void say_which(void)
{
    /* Async-signal-safe: write(2) only. */
    static const char a[] = "replay: FAILED on input ";
    if (write(2, a, sizeof a - 1) < 0 || write(2, current, strlen(current)) < 0 ||
        write(2, "\n", 1) < 0)
        return;
}

static void on_signal(int sig)
{
    say_which();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
#ifdef REPLAY_SANITIZED
    /* The sanitizers own SIGSEGV and friends and print the report; they call
     * this before exiting. */
    __sanitizer_set_death_callback(say_which);
    int sigs[] = {SIGABRT, SIGALRM};
#else
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM};
#endif
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], on_signal);
}

/* Reads the whole file into a buffer of exactly its size, so ASan sees a
 * read past the input's end as the overflow it is. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fclose(f);
            return -1;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return -1;
    }
    uint8_t *exact = malloc(n ? n : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    snprintf(current, sizeof current, "%s", path);
    alarm(REPLAY_TIMEOUT);
    LLVMFuzzerTestOneInput(exact, n);
    alarm(0);
    free(exact);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Files of dir in name order; dot files and README* are not inputs. */
static int run_dir(const char *dir, unsigned long *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    if (n < 0) {
        if (errno == ENOENT)
            return 0; /* no crash saved yet */
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        char path[4096];
        struct stat st;
        if (rc == 0 && name[0] != '.' && strncmp(name, "README", 6) != 0 &&
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) < sizeof path &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    install_handlers();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int rc;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = run_dir(argv[i], &count);
        } else {
            rc = run_file(argv[i]);
            count++;
        }
        if (rc < 0)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%s: %lu inputs replayed in %.2f s\n", argv[0], count, secs);
    return 0;
}
