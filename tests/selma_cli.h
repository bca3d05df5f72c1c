// For tests that run the built `selma` binary (SELMA_BUILD_ROOT/experiments/selma):
// find it, run it with arguments, and capture stdout and stderr together.
#ifndef SELMA_TESTS_SELMA_CLI_H
#define SELMA_TESTS_SELMA_CLI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char selma[4096];

// Sets `selma`; 0, or -1 after saying why (run outside meson test, not built).
static inline int selma_locate(const char *test) {
    const char *root = getenv("SELMA_BUILD_ROOT");
    if (!root) {
        fprintf(stderr, "%s: SELMA_BUILD_ROOT is not set (run through meson test)\n", test);
        return -1;
    }
    snprintf(selma, sizeof selma, "%s/experiments/selma", root);
    if (access(selma, X_OK) != 0) {
        fprintf(stderr, "%s: %s is not built\n", test, selma);
        return -1;
    }
    return 0;
}

// Runs `selma ARGS` with stdout and stderr into out (n bytes, NUL-terminated);
// returns the exit status, or -1 if it could not run or died by a signal.
static inline int selma_run(const char *args, char *out, size_t n) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", selma, args);
    FILE *p = popen(cmd, "r");
    if (!p) { out[0] = 0; return -1; }
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define EXPECT_IN(out, s) EXPECT(strstr(out, s) != NULL, "'%s' not in output:\n%s", s, out)

#endif
