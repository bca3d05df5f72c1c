// `selma pretrain`, `selma sample` and `selma generate`, run as the built binary
// (SELMA_BUILD_ROOT/experiments/selma) on a tiny config:
//   - a run interrupted after a checkpoint (--stop-after) and resumed ends with
//     byte-identical weights (bundle and last checkpoint) to an uninterrupted run; a
//     newer checkpoint directory without DONE is skipped on resume, and said so;
//   - sampling gives the same PNG bytes twice for a seed and other bytes for another;
//   - generate writes a dataset that data/dataset.h reads back with every prompt,
//     skills, seeds and attributes, and `selma eval` scores it;
//   - a bad config key fails naming file:line and the key; a missing model directory
//     fails naming it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "tests/selma_cli.h"
#include "data/dataset.h"
#include "data/shapes.h"
#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static char tmpdir[64], out[65536];

// Runs `selma ARGS` with stdout and stderr into `out`; returns the exit status.
static int run(const char *args) { return selma_run(args, out, sizeof out); }

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (file_read_all(a, &x, &nx)) return 0;
    if (file_read_all(b, &y, &ny)) { free(x); return 0; }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static void write_config(const char *path, const char *dir, const char *extra) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fprintf(f,
            "[model]\nimage_size = 16\nchannels = 8, 16\ncross_attn = 0, 1\nheads = 2, 2\n"
            "norm_groups = 4\ntext_width = 16\ntext_layers = 1\ntext_heads = 2\ntext_mlp = 32\n"
            "%s\n[train]\nsteps = 6\nbatch = 4\nwarmup = 2\nlog_every = 1\nthreads = 1\n"
            "[output]\ndir = %s\ncheckpoint_every = 2\nkeep = 2\n", extra, dir);
    fclose(f);
}

static void test_pretrain_resume(void) {
    char cfg_a[256], cfg_b[256], a[256], b[256], args[1024], pa[512], pb[512];
    snprintf(a, sizeof a, "%s/a", tmpdir), snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(cfg_a, sizeof cfg_a, "%s/a.ini", tmpdir), snprintf(cfg_b, sizeof cfg_b, "%s/b.ini", tmpdir);
    write_config(cfg_a, a, "");
    write_config(cfg_b, b, "");
    snprintf(args, sizeof args, "pretrain %s", cfg_a);
    EXPECT(run(args) == 0, "%s", out);
    snprintf(args, sizeof args, "pretrain %s --stop-after 3", cfg_b);
    EXPECT(run(args) == 0, "%s", out);
    snprintf(pb, sizeof pb, "%s/model", b);
    EXPECT(access(pb, F_OK) != 0, "an interrupted run wrote its model");
    snprintf(pb, sizeof pb, "%s/checkpoints/step_000004", b);
    EXPECT_TRUE(access(pb, F_OK) != 0);
    snprintf(pb, sizeof pb, "%s/checkpoints/step_000005", b);  // newer, never finished
    CHECK(mkdir_p(pb) == 0);
    snprintf(args, sizeof args, "pretrain %s", cfg_b);
    EXPECT(run(args) == 0, "%s", out);
    EXPECT(strstr(out, "step_000005 is incomplete") && strstr(out, "resumed from") &&
           strstr(out, "step_000002"), "%s", out);
    static const char *const files[] = {"model/unet/diffusion_pytorch_model.safetensors",
                                        "model/text_encoder/model.safetensors",
                                        "checkpoints/step_000006/state.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]), snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        EXPECT(same_file(pa, pb), "%s differs after resuming", files[i]);
    }
    snprintf(pa, sizeof pa, "%s/config.ini", a);
    EXPECT_TRUE(access(pa, F_OK) == 0);
    snprintf(pa, sizeof pa, "%s/log.txt", a);
    EXPECT_TRUE(access(pa, F_OK) == 0);
}

static void test_sample(void) {
    char args[1024], g1[256], g2[256], g3[256];
    snprintf(g1, sizeof g1, "%s/g1.png", tmpdir), snprintf(g2, sizeof g2, "%s/g2.png", tmpdir);
    snprintf(g3, sizeof g3, "%s/g3.png", tmpdir);
    const char *common = "--prompt 'two red circles' --n 3 --steps 4 --cfg 3";
    snprintf(args, sizeof args, "sample --model %s/a/model %s --seed 5 --out %s", tmpdir, common, g1);
    EXPECT(run(args) == 0, "%s", out);
    snprintf(args, sizeof args, "sample --model %s/a/model %s --seed 5 --out %s", tmpdir, common, g2);
    EXPECT(run(args) == 0, "%s", out);
    snprintf(args, sizeof args, "sample --model %s/a/model %s --seed 6 --sampler euler --out %s", tmpdir, common, g3);
    EXPECT(run(args) == 0, "%s", out);
    EXPECT_TRUE(same_file(g1, g2));
    EXPECT_TRUE(!same_file(g1, g3));
    snprintf(args, sizeof args, "sample --model %s/nothing --prompt x --out %s", tmpdir, g1);
    EXPECT(run(args) == 1 && strstr(out, "nothing") && strstr(out, "No such file"), "%s", out);
}

static void test_generate(void) {
    char args[2048], txt[256], h5[256], lora[256];
    snprintf(txt, sizeof txt, "%s/prompts.txt", tmpdir);
    snprintf(h5, sizeof h5, "%s/gen.h5", tmpdir);
    const char *lines = "a red circle\n\n  three blue squares  \ntwo yellow triangles\n"
                        "a green square left of a white circle\na large purple circle\n";
    CHECK(atomic_write(txt, lines, strlen(lines)) == 0);
    snprintf(args, sizeof args, "generate --model %s/a/model --prompts %s --out %s --steps 3 --batch 2 "
             "--seed 10 --skill count --cfg 2.5", tmpdir, txt, h5);
    EXPECT(run(args) == 0, "%s", out);
    dataset d;
    EXPECT(dataset_read(h5, &d) == 0, "%s", out);
    EXPECT(d.n == 5 && d.height == 16 && d.width == 16, "n %d", d.n);
    EXPECT_TRUE(d.n == 5 && !strcmp(d.prompt[1], "three blue squares") && !strcmp(d.prompt[4], "a large purple circle"));
    for (int i = 0; i < d.n && d.n == 5; i++) EXPECT_TRUE(d.seed[i] == 10 + (uint64_t)i && d.skill[i] == SKILL_COUNT);
    char hash[24], want[300];
    CHECK(snprintf(want, sizeof want, "%s/a/model", tmpdir) > 0);
    EXPECT(!strcmp(d.generator, want), "generator %s", d.generator);
    EXPECT_TRUE(strlen(d.generator_hash) == 16 && bundle_hash(want, hash, sizeof hash) == 0);
    EXPECT(!strcmp(d.generator_hash, hash), "%s vs %s", d.generator_hash, hash);
    EXPECT_TRUE(d.steps == 3 && d.guidance_scale == 2.5f && !strcmp(d.sampler, "ddim") && !strcmp(d.world, "shapes"));
    // Image 3 remade alone (its prompt first in a file of its own, seed 13) is the same.
    uint8_t img3[16 * 16 * 3];
    if (d.n == 5) memcpy(img3, d.image + 3 * 16 * 16 * 3, sizeof img3);
    dataset_free(&d);
    CHECK(atomic_write(txt, "a green square left of a white circle\n", 38) == 0);
    snprintf(args, sizeof args, "generate --model %s/a/model --prompts %s --out %s --steps 3 --seed 13 --cfg 2.5",
             tmpdir, txt, h5);
    EXPECT(run(args) == 0, "%s", out);
    EXPECT_TRUE(dataset_read(h5, &d) == 0 && d.n == 1 && memcmp(d.image, img3, sizeof img3) == 0);
    dataset_free(&d);
    snprintf(args, sizeof args, "eval --dataset %s", h5);
    EXPECT(run(args) == 0 && strstr(out, "DSG"), "%s", out);
    // A LoRA file for another model is refused, naming the file.
    snprintf(lora, sizeof lora, "%s/a/model/unet/diffusion_pytorch_model.safetensors", tmpdir);
    snprintf(args, sizeof args, "generate --model %s/a/model --prompts %s --out %s --lora %s:0.5", tmpdir, txt, h5, lora);
    EXPECT(run(args) == 1 && strstr(out, "not a UNet LoRA tensor"), "%s", out);
}

static void test_bad_config(void) {
    char cfg[256], args[512], where[300];
    snprintf(cfg, sizeof cfg, "%s/bad.ini", tmpdir);
    write_config(cfg, "/nonexistent-never-written", "text_widht = 16");
    snprintf(args, sizeof args, "pretrain %s", cfg);
    snprintf(where, sizeof where, "%s:11", cfg);
    EXPECT(run(args) == 1 && strstr(out, where) && strstr(out, "text_widht"), "%s", out);
    write_config(cfg, "/nonexistent-never-written", "");
    snprintf(args, sizeof args, "pretrain %s train.lr=abc", cfg);
    EXPECT(run(args) == 1 && strstr(out, "command line") && strstr(out, "lr"), "%s", out);
    snprintf(args, sizeof args, "pretrain %s model.heads=3,3", cfg);  // 8 channels / 3 heads
    EXPECT(run(args) == 1 && strstr(out, "heads"), "%s", out);
}

int main(void) {
    if (selma_locate("test_generate")) return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_generate.XXXXXX");
    CHECK(mkdtemp(tmpdir));
    test_pretrain_resume();
    test_sample();
    test_generate();
    test_bad_config();
    dir_remove_tree(tmpdir);
    return check_report("test_generate");
}
