// `selma run` end to end on a tiny model made here (a few pretraining steps), through
// the binary as a user runs it:
//   - train, validation and test prompts are disjoint;
//   - the run ends with "results: <dir>" and writes config.ini, log.txt, results.*;
//   - a rerun skips every stage (the log says so) and gives identical results.json;
//     changing one key ([eval] steps) reruns the eval stages only; [train] shards = 2
//     (gradient accumulation) reruns the trainings, = 1 (the default) nothing;
//   - an expert training interrupted by --stop-after resumes and ends bit-identical to
//     the uninterrupted one;
//   - an unknown key, a missing model and an impossible value fail before any work,
//     naming file:line;
//   - the device keys: [train] device (pretrain and run) and --device (sample,
//     generate) refuse an unknown value naming the key, and cuda where there is no GPU.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static char tmp[64], selma[1024];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *slurp(const char *fmt, ...) {
    char path[4096], *text = NULL;
    size_t n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    if (file_read_all(path, &text, &n)) return NULL;
    return text;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

static const char *pipeline_ini =
    "[run]\nname = tiny\nmethods = base, experts, mixed, selma\nseeds = 1\nthreads = 1\n"
    "[prompts]\nskills = count, spatial\nn_train = 4\nn_val = 2\nn_test = 3\nseed = 5\n"
    "[generate]\nsteps = 2\ncfg = 2\nbatch = 8\n"
    "[lora]\nrank = 2\nalpha = 2\n"
    "[train]\nsteps = 6\nbatch = 2\nlr = 1e-3\ncheckpoint_every = 3\nselect = val\nlog_every = 1\n"
    "[eval]\nsteps = 2\ncfg = 1, 3\nbatch = 8\nquality = true\n";

// Lines of the log that mention a stage kind with a verdict ("running" / "skipped").
static int count_log(const char *log, const char *kind, const char *verdict) {
    int n = 0;
    for (const char *p = log; (p = strstr(p, "stage ")); p++) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
        if (!strncmp(line + 6, kind, strlen(kind)) && strstr(line, verdict)) n++;
    }
    return n;
}

int main(void) {
    const char *root = getenv("SELMA_BUILD_ROOT");
    snprintf(selma, sizeof selma, "%s/experiments/selma", root ? root : "build");
    snprintf(tmp, sizeof tmp, "/tmp/selma_pipe_%d", (int)getpid());
    CHECK(mkdir_p(tmp) == 0);
    char path[4200];
    // A tiny base model: a few pretraining steps (quality is irrelevant to plumbing).
    snprintf(path, sizeof path, "%s/pre.ini", tmp);
    write_file(path,
               "[model]\nworld = shapes\nimage_size = 32\nchannels = 8, 16\nlayers_per_block = 1\n"
               "cross_attn = 0, 1\nheads = 2, 2\nnorm_groups = 4\ntext_width = 16\ntext_layers = 1\n"
               "text_heads = 2\ntext_mlp = 32\nmax_tokens = 48\n"
               "[train]\nsteps = 2\nbatch = 2\nwarmup = 1\nthreads = 1\n"
               "[output]\ncheckpoint_every = 0\n");
    EXPECT(sh("%s pretrain %s/pre.ini output.dir=%s/pre > %s/pre.out 2>&1", selma, tmp, tmp, tmp) == 0,
           "pretraining the tiny model");
    // The device keys, before any work: an unknown value names its key; cuda without a
    // GPU says so (on a GPU machine cuda is a valid choice and is not tried here).
    const char *dev_cmds[] = {"pretrain %s/pre.ini output.dir=%s/dev train.device=%s",
                              "sample --model %s/pre/model --prompt x --out %s/dev.png --n 1 --device %s",
                              "generate --model %s/pre/model --prompts /dev/null --out %s/dev.h5 --device %s"};
    const char *dev_want[] = {"[train] device", "--device", "--device"};
    for (int i = 0; i < 3; i++)
        for (int cuda = 0; cuda < 2; cuda++) {
            if (cuda && cuda_device_count() > 0) continue;
            char cmd[1024];
            snprintf(cmd, sizeof cmd, dev_cmds[i], tmp, tmp, cuda ? "cuda" : "gpu");
            int r = sh("%s %s > %s/dev.out 2>&1", selma, cmd, tmp);
            char *o = slurp("%s/dev.out", tmp);
            EXPECT(r != 0 && o && strstr(o, dev_want[i]) && strstr(o, cuda ? "no usable CUDA device" : "gpu"),
                   "'%s' is refused naming %s: rc %d, %s", cmd, dev_want[i], r, o ? o : "");
            free(o);
        }
    snprintf(path, sizeof path, "%s/p.ini", tmp);
    write_file(path, pipeline_ini);
    char over[4200];
    snprintf(over, sizeof over, "model.base=%s/pre/model", tmp);

    // First run.
    EXPECT(sh("%s run %s/p.ini %s run.dir=%s/a > %s/a.out 2>&1", selma, tmp, over, tmp, tmp) == 0, "run a");
    char *out = slurp("%s/a.out", tmp), *last;
    EXPECT(out && (last = strstr(out, "results: ")) && !strncmp(last + 9, tmp, strlen(tmp)) &&
               !strchr(last, '\n')[1], "the last line is 'results: <dir>':\n%s", out ? out : "");
    free(out);
    char *json_a = slurp("%s/a/results.json", tmp);
    EXPECT(json_a && strstr(json_a, "\"selma\"") && strstr(json_a, "\"expert-count\"") &&
               strstr(json_a, "\"mixed\"") && strstr(json_a, "\"base\""), "results.json has every method");
    struct stat st;
    snprintf(path, sizeof path, "%s/a/config.ini", tmp);
    EXPECT(stat(path, &st) == 0, "config.ini written");
    snprintf(path, sizeof path, "%s/a/report.html", tmp);
    EXPECT(stat(path, &st) == 0, "report.html written");

    // Disjoint splits: every prompt file under work/prompts-*/ of each skill.
    EXPECT(sh("cd %s/a/work/prompts-* && for s in count spatial; do "
              "test $(cat $s.train.txt | wc -l) = 4 && test $(cat $s.val.txt | wc -l) = 2 && "
              "test $(cat $s.test.txt | wc -l) = 3 && "
              "test $(cat $s.train.txt $s.val.txt $s.test.txt | sort -u | wc -l) = 9 || exit 1; done", tmp) == 0,
           "train/val/test prompts: sizes 4/2/3 and no prompt in two splits");

    // A rerun skips everything and gives the same results.json; [train] shards = 1 is
    // the default and leaves the stages' inputs as they were.
    EXPECT(sh("%s run %s/p.ini %s run.dir=%s/a train.shards=1 > %s/a2.out 2>&1", selma, tmp, over, tmp, tmp) == 0,
           "rerun");
    char *log2 = slurp("%s/a2.out", tmp);
    EXPECT(log2 && count_log(log2, "", "running") == 0 && count_log(log2, "train", "skipped") == 3 &&
               count_log(log2, "eval", "skipped") == 5 && count_log(log2, "prompts", "skipped") == 1,
           "the rerun skips every stage:\n%s", log2 ? log2 : "");
    free(log2);
    char *json_a2 = slurp("%s/a/results.json", tmp);
    EXPECT(json_a && json_a2 && !strcmp(json_a, json_a2), "the rerun's results.json is identical");
    free(json_a2);

    // One key changed: only the eval stages rerun (the quality figure is an eval key
    // that checkpoint selection does not read).
    EXPECT(sh("%s run %s/p.ini %s run.dir=%s/a eval.quality=false > %s/a3.out 2>&1", selma, tmp, over, tmp, tmp) == 0,
           "rerun with eval.quality=false");
    char *log3 = slurp("%s/a3.out", tmp);
    EXPECT(log3 && count_log(log3, "eval", "running") == 5 && count_log(log3, "train", "running") == 0 &&
               count_log(log3, "train", "skipped") == 3 && count_log(log3, "generate", "skipped") == 1 &&
               count_log(log3, "merge", "skipped") == 1, "eval.quality reruns the evals only:\n%s", log3 ? log3 : "");
    free(log3);
    free(json_a);

    // Interrupted training resumes bit-identically: a fresh run directory stopped after
    // step 4 of the first expert (exit 3), then rerun to the end.
    int rc = sh("%s run %s/p.ini %s run.dir=%s/b --stop-after 4 > %s/b1.out 2>&1", selma, tmp, over, tmp, tmp);
    EXPECT(rc == 3, "--stop-after exits 3 (got %d)", rc);
    EXPECT(sh("grep -q 'stopped at step 4' %s/b/log.txt", tmp) == 0, "the log says where it stopped");
    EXPECT(sh("%s run %s/p.ini %s run.dir=%s/b > %s/b2.out 2>&1", selma, tmp, over, tmp, tmp) == 0, "resumed run");
    EXPECT(sh("grep -q 'resumed from' %s/b/log.txt", tmp) == 0, "the second run resumed from the checkpoint");
    EXPECT(sh("cd %s/a/work && n=0 && for d in train-*; do cmp -s $d/lora.safetensors %s/b/work/$d/lora.safetensors"
              " && cmp -s $d/loss.txt %s/b/work/$d/loss.txt || exit 1; n=$((n+1)); done && test $n = 3",
              tmp, tmp, tmp) == 0,
           "every adapter (and loss log) of the interrupted run equals the uninterrupted run's, byte for byte");

    // Gradient accumulation ([train] shards = 2: each batch of 2 in two pieces) is a new
    // input of the train stages: they rerun, with the trainer saying so.
    EXPECT(sh("%s run %s/p.ini %s run.dir=%s/a train.shards=2 > %s/a4.out 2>&1", selma, tmp, over, tmp, tmp) == 0,
           "rerun with train.shards=2");
    char *log4 = slurp("%s/a4.out", tmp);
    EXPECT(log4 && count_log(log4, "train", "running") == 3 && count_log(log4, "generate", "skipped") == 1 &&
               strstr(log4, "trainer: data-parallel, 2 shards of 1 items (in this process, in turn)"),
           "train.shards=2 reruns the trainings in two pieces per batch:\n%s", log4 ? log4 : "");
    free(log4);

    // Bad configs fail before any work, naming file:line.
    const struct { const char *text, *want; } bad[] = {
        {"[run]\nname = x\n[train]\nstepz = 3\n", "bad.ini:4"},
        {"[run]\nname = x\n[model]\nbase = /nonexistent/model\n", "bad.ini:4: [model] base"},
        {"[run]\nname = x\n[train]\nselect = val\n[prompts]\nn_val = 0\n", "bad.ini:4: [train] select"},
        {"[run]\nname = x\n[train]\nsteps = -5\n", "bad.ini:4"},
        {"[run]\nname = x\nmethods = base, dreambooth\n", "bad.ini:3: [run] methods"},
        {"[run]\nname = x\n[sweep]\nlora.rnk = 4, 8\n", "bad.ini:4: [sweep] lora.rnk"},
        {"[run]\nname = x\n[train]\ndevice = gpu\n", "bad.ini:4: [train] device"},
        {"[run]\nname = x\n[train]\nshards = 3\n", "bad.ini:4: [train] shards: 3 does not divide the batch 16"},
        {"[run]\nname = x\n[train]\ndevice = cuda\n", "bad.ini:4: [train] device: cuda: no usable CUDA device"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (strstr(bad[i].text, "device = cuda") && cuda_device_count() > 0) continue;  // valid there
        snprintf(path, sizeof path, "%s/bad.ini", tmp);
        write_file(path, bad[i].text);
        int base_override = strstr(bad[i].text, "nonexistent") == NULL;
        rc = sh("cd %s && %s run bad.ini %s run.dir=%s/c > %s/c.out 2>&1", tmp, selma, base_override ? over : "",
                tmp, tmp);
        char *o = slurp("%s/c.out", tmp);
        snprintf(path, sizeof path, "%s/c", tmp);
        EXPECT(rc != 0 && o && strstr(o, bad[i].want) && stat(path, &st) != 0,
               "bad config %zu fails before any work naming '%s': rc %d, %s", i, bad[i].want, rc, o ? o : "");
        free(o);
    }
    if (check_failures == 0) sh("rm -rf %s", tmp);
    return check_report("test_pipeline");
}
