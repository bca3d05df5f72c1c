// The prompts stage: for every skill, prompts written once by prompt_generate (whose
// ROUGE-L filter already keeps them apart), exact duplicates dropped, then split in
// generation order: the first n_test are the test prompts, the next n_val the
// validation prompts, the rest the training prompts. Growing n_train therefore keeps
// the test and validation prompts as they are, and no prompt is in two splits.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prompt_gen.h"
#include "experiments/pipeline.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

static int write_split(const char *path, char **text, int n) {
    afile a;
    if (afile_open(&a, path)) return -1;
    for (int i = 0; i < n; i++) fprintf(a.f, "%s\n", text[i]);
    return afile_commit(&a);
}

int stage_prompts(const pipeline_cfg *c, const char *dir) {
    int skills[SKILL_KINDS], ns;
    if (pipeline_skills(c, skills, &ns)) return -1;
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    o.threshold = c->threshold;
    int want = c->n_test + c->n_val + c->n_train;
    for (int k = 0; k < ns; k++) {
        int s = skills[k];
        prompt_list l = {0};
        prompt_gen_stats st;
        if (prompt_generate(s, want, (uint64_t)c->prompt_seed, &o, &l, &st)) {
            prompt_list_free(&l);
            return err_wrap("prompts of skill %s", skill_names[s]);
        }
        // Exact duplicates cannot pass a ROUGE-L threshold below 1, but a threshold of
        // 1 lets them through: drop them so that the splits stay disjoint.
        int n = 0;
        for (int i = 0; i < l.n; i++) {
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = !strcmp(l.text[j], l.text[i]);
            if (dup) free(l.text[i]);
            else l.text[n++] = l.text[i];
        }
        int bad = n < want;
        if (bad) err_set("skill %s: %d distinct prompts, the splits need %d", skill_names[s], n, want);
        char path[4200];
        const char *names[3] = {"test", "val", "train"};
        int counts[3] = {c->n_test, c->n_val, c->n_train}, off = 0;
        for (int p = 0; p < 3 && !bad; p++) {
            snprintf(path, sizeof path, "%s/%s.%s.txt", dir, skill_names[s], names[p]);
            bad = write_split(path, l.text + off, counts[p]);
            off += counts[p];
        }
        for (int i = 0; i < n; i++) free(l.text[i]);
        l.n = 0;
        prompt_list_free(&l);
        if (bad) return -1;
        log_line("prompts: %s: %d train, %d val, %d test (%ld candidates, %ld too similar)",
                 skill_names[s], c->n_train, c->n_val, c->n_test, st.candidates, st.rejected_similar);
    }
    return 0;
}

int prompts_read(const char *path, char ***prompts, int *n) {
    char *text;
    size_t len;
    *prompts = NULL, *n = 0;
    if (file_read_all(path, &text, &len)) return -1;
    int cap = 16;
    char **p = malloc(sizeof(char *) * (size_t)cap);
    CHECK(p);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!*line) continue;
        if (*n == cap) p = realloc(p, sizeof(char *) * (size_t)(cap *= 2));
        CHECK(p);
        p[*n] = strdup(line);
        CHECK(p[*n]);
        (*n)++;
    }
    free(text);
    *prompts = p;
    return 0;
}

void prompts_free(char **prompts, int n) {
    for (int i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
}
