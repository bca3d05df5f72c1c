// The external prompt generator: one child process per request, examples in on stdin,
// prompts out on stdout, bounded by a timeout.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/prompt_gen.h"
#include "runtime/error.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Splits buf into trimmed non-empty lines.
static void split_lines(char *buf, char ***lines, int *n) {
    int cap = 8;
    *lines = malloc(sizeof(char *) * (size_t)cap);
    CHECK(*lines);
    *n = 0;
    for (char *s = buf; *s;) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        while (*s == ' ' || *s == '\t') s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r')) s[--len] = 0;
        if (len) {
            if (*n == cap) {
                cap *= 2;
                *lines = realloc(*lines, sizeof(char *) * (size_t)cap);
                CHECK(*lines);
            }
            (*lines)[(*n)++] = strdup(s);
        }
        if (!e) break;
        s = e + 1;
    }
}

int prompt_command_run(const char *command, const char *const *examples, int n_examples,
                       int timeout_s, char ***lines, int *n_lines) {
    int in[2], out[2];
    *lines = NULL;
    *n_lines = 0;
    if (pipe(in) || pipe(out)) return err_set("generator command '%s': pipe: %s", command, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return err_set("generator command '%s': fork: %s", command, strerror(errno));
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    // The examples are far smaller than a pipe's buffer, so writing them all before
    // reading cannot deadlock; a child that exits without reading must not kill us.
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < n_examples; i++) {
        size_t len = strlen(examples[i]);
        if (write(in[1], examples[i], len) != (ssize_t)len || write(in[1], "\n", 1) != 1) break;
    }
    close(in[1]);
    signal(SIGPIPE, old);

    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    CHECK(buf);
    double deadline = now_s() + timeout_s;
    int timed_out = 0;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) { timed_out = 1; break; }
        struct pollfd pfd = {out[0], POLLIN, 0};
        int rc = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) { timed_out = 1; break; }
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf);
        }
        ssize_t got = read(out[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
        if (len > (1u << 24)) { timed_out = 2; break; }  // 16 MB of "prompts": not a generator
    }
    close(out[0]);
    buf[len] = 0;
    if (timed_out) kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (timed_out) {
        free(buf);
        return timed_out == 1
                   ? err_set("generator command '%s' gave no end of output within %d s; killed", command, timeout_s)
                   : err_set("generator command '%s' wrote more than 16 MB; killed", command);
    }
    if (WIFSIGNALED(status)) {
        free(buf);
        return err_set("generator command '%s' was killed by signal %d", command, WTERMSIG(status));
    }
    if (WEXITSTATUS(status) != 0) {
        free(buf);
        return err_set("generator command '%s' failed with exit status %d%s", command, WEXITSTATUS(status),
                       WEXITSTATUS(status) == 127 ? " (command not found?)" : "");
    }
    split_lines(buf, lines, n_lines);
    free(buf);
    return 0;
}
