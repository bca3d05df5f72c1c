#include "runtime/log.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/error.h"

static FILE *log_file;
static int log_quiet;

int log_open(const char *path) {
    log_close();
    log_file = fopen(path, "a");
    IO_TRY(log_file, path);
    return 0;
}

void log_close(void) {
    if (log_file) fclose(log_file);
    log_file = NULL;
}

void log_set_quiet(int quiet) { log_quiet = quiet; }

static void log_vline(const char *fmt, va_list ap) {
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (!log_quiet) { fputs(buf, stdout); fputc('\n', stdout); fflush(stdout); }
    if (log_file) { fputs(buf, log_file); fputc('\n', log_file); fflush(log_file); }
}

void log_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline(fmt, ap);
    va_end(ap);
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    return buf;
}

void progress_begin(progress *p, const char *label, long start_step, long total) {
    *p = (progress){.label = label, .total = total, .start_step = start_step,
                    .t0 = time_now(), .last_step = start_step, .tty = isatty(STDOUT_FILENO)};
    p->last_print = p->t0;
}

static void progress_format(const progress *p, long step, double loss, char *buf, size_t n) {
    double el = time_now() - p->t0;
    double rate = el > 0 ? (double)(step - p->start_step) / el : 0;
    char eta[32];
    format_duration(rate > 0 ? (double)(p->total - step) / rate : NAN, eta, sizeof eta);
    size_t k = (size_t)snprintf(buf, n, "%s %6ld/%ld", p->label, step, p->total);
    if (!isnan(loss)) k += (size_t)snprintf(buf + k, n - k, "  loss %.6f", loss);
    if (rate >= 1 || rate == 0) snprintf(buf + k, n - k, "  %.2f it/s  ETA %s", rate, eta);
    else snprintf(buf + k, n - k, "  %.2f s/it  ETA %s", 1 / rate, eta);
}

void progress_update(progress *p, long step, double loss) {
    double now = time_now();
    char buf[256];
    if (p->tty) {
        if (now - p->last_print < 0.25 && step < p->total) return;
        progress_format(p, step, loss, buf, sizeof buf);
        printf("\r%s\033[K", buf);
        fflush(stdout);
    } else {
        long every = p->total / 20 > 0 ? p->total / 20 : 1;
        int due = step / every != p->last_step / every || now - p->last_print > 30 || step == p->total;
        if (!due) return;
        progress_format(p, step, loss, buf, sizeof buf);
        printf("%s\n", buf);
        fflush(stdout);
    }
    if (log_file) {
        if (!p->tty) { fputs(buf, log_file); fputc('\n', log_file); }
        else if (step == p->total || now - p->last_print > 30) { fputs(buf, log_file); fputc('\n', log_file); }
        fflush(log_file);
    }
    p->last_print = now;
    p->last_step = step;
}

void progress_end(progress *p) {
    if (p->tty) { printf("\n"); fflush(stdout); }
    char d[32];
    double el = time_now() - p->t0;
    if (log_file) fprintf(log_file, "%s done in %s\n", p->label, format_duration(el, d, sizeof d));
}
