// selma: one binary, one sub-command per pipeline stage or tool.
#include <stdio.h>
#include <string.h>

#include "experiments/commands.h"
#include "runtime/comm.h"
#include "runtime/device.h"
#include "runtime/error.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"version", cmd_version, "print the version and what this build supports"},
    {"inspect", cmd_inspect, "list a safetensors or HDF5 file's tensors/datasets and metadata"},
    {"prompts", cmd_prompts, "generate diverse prompts of a skill (shapes world)"},
    {"world", cmd_world, "world render: ground-truth images of generated prompts"},
    {"eval", cmd_eval, "DSG and TIFA scores of a dataset's images (shapes world)"},
    {"pretrain", cmd_pretrain, "train the shapes base model (text encoder + UNet) from a config"},
    {"sample", cmd_sample, "a labelled PNG grid of images of one prompt from a model"},
    {"generate", cmd_generate, "images for every prompt of a file, written as a dataset"},
    {"train", cmd_train, "one LoRA adapter on datasets, base frozen (a skill expert)"},
    {"merge", cmd_merge, "merge LoRA experts into one adapter (SELMA: sum, weights 1/N)"},
    {"fold", cmd_fold, "bake an adapter into the base weights: a new bundle"},
    {"run", cmd_run, "the whole SELMA pipeline from a config (skips finished stages)"},
    {"sd-check", cmd_sd_check, "run an SD pipeline folder's pieces on given inputs (parity checks)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: selma <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`selma <command> --help` describes a command.\n");
}

int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("selma %s\n", SELMA_VERSION);
#ifdef SELMA_CUDA
    printf("cuda: built; device: %s\n", cuda_device_describe());
#else
    printf("cuda: not built\n");
#endif
#ifdef SELMA_MPI
    printf("mpi: built\n");
#else
    printf("mpi: not built\n");
#endif
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    // Launched as several ranks (mpirun, srun), pretrain (data-parallel) and run
    // (expert-parallel) share their work out; any other command would run N times over
    // and write the same outputs N times.
    comm *w;
    if (comm_init(&w)) {
        fprintf(stderr, "selma: %s\n", err_msg());
        return 1;
    }
    if (comm_size(w) > 1 && strcmp(argv[1], "pretrain") && strcmp(argv[1], "run") && strcmp(argv[1], "version")) {
        if (comm_rank(w) == 0)
            fprintf(stderr, "selma %s: runs as one process (launched as %d ranks); only `selma pretrain` "
                    "and `selma run` work over several ranks\n", argv[1], comm_size(w));
        comm_finalize();
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].run(argc - 1, argv + 1);
            comm_finalize();
            return rc;
        }
    comm_finalize();
    fprintf(stderr, "selma: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
