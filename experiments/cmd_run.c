// `selma run CONFIG [section.key=value ...]`: the whole SELMA pipeline from one config
// (experiments/pipeline.h). The last line printed is "results: <run directory>".
// Launched as several ranks, the trainings spread over them (pipeline_ranks.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/commands.h"
#include "experiments/pipeline.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: selma run CONFIG.ini [section.key=value ...] [--stop-after N]\n"
            "  prompts -> generate -> train experts -> merge -> eval -> report, every stage\n"
            "  skipped when its output is complete for the same inputs; [sweep] crosses values.\n"
            "  --stop-after N   stop expert training after step N as an interruption would\n"
            "                   (exit 3); rerun the same command to resume\n"
            "  --check          resolve and validate the config (and every sweep variant), then exit\n"
            "  under mpirun/srun the LoRA trainings spread over the ranks (job j on rank j mod N);\n"
            "  rank 0 does the rest (README.md, \"Multi-process\")\n");
}

int cmd_run(int argc, char **argv) {
    const char *config = NULL;
    long stop_after = 0;
    int check = 0;
    char **over = malloc(sizeof(char *) * (size_t)(argc + 1));
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(over); return 0; }
        if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) stop_after = atol(argv[++i]);
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (argv[i][0] != '-' && strchr(argv[i], '=')) over[n++] = argv[i];
        else if (!config && argv[i][0] != '-') config = argv[i];
        else {
            fprintf(stderr, "selma run: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            free(over);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        free(over);
        return 2;
    }
    comm *w;
    if (comm_init(&w)) {
        fprintf(stderr, "selma run: %s\n", err_msg());
        free(over);
        return 1;
    }
    if (check) {
        pipeline_variant *v;
        int nv, rc = pipeline_load(config, over, n, &v, &nv);
        free(over);
        if (rc) {
            fprintf(stderr, "selma run: %s\n", err_msg());
            return 1;
        }
        if (comm_rank(w) != 0) {  // one copy of the answer
            free(v);
            return 0;
        }
        printf("%s: valid, %d variant%s\n", config, nv, nv > 1 ? "s" : "");
        for (int i = 0; i < nv; i++)
            if (v[i].label[0]) printf("  %s\n", v[i].label);
        free(v);
        return 0;
    }
    int rc = pipeline_run(config, over, n, stop_after, w);
    free(over);
    log_close();
    if (rc < 0) {
        fprintf(stderr, "selma run: %s\n", err_msg());
        // A rank that fails alone would leave the others waiting until their timeout.
        if (comm_size(w) > 1) comm_abort(w, 1, "selma run failed on this rank (above)");
        return 1;
    }
    return rc;  // 3: stopped by --stop-after
}
