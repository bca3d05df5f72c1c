// Logging in llm.c's manner: plain lines on stdout, copied to a log file when one is
// open (each run's log.txt); and a progress line for long loops.
#ifndef SELMA_RUNTIME_LOG_H
#define SELMA_RUNTIME_LOG_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

int log_open(const char *path);  // appends; -1 with a message if it cannot be opened
void log_close(void);
void log_set_quiet(int quiet);   // quiet: only the file gets the lines
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double time_now(void);  // seconds, monotonic

// A progress line: "train  120/5000  loss 0.031234  3.41 it/s  ETA 23m54s".
// On a terminal it rewrites itself at most 4 times a second; otherwise (CI, pipes) it
// prints a full line about every 5% of the loop or every 30 s, and every line it
// prints also goes to the log file.
typedef struct progress {
    const char *label;
    long total;
    long start_step;   // a resumed loop counts speed from here
    double t0, last_print;
    long last_step;
    int tty;
} progress;

void progress_begin(progress *p, const char *label, long start_step, long total);
// step is the number of steps done; loss may be NAN to leave it out.
void progress_update(progress *p, long step, double loss);
void progress_end(progress *p);
// "1h02m", "23m54s", "12.3s"
char *format_duration(double seconds, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
