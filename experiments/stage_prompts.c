// The prompts stage: for every skill, prompts written once by prompt_generate (whose
// ROUGE-L filter already keeps them apart) or read from [prompts] file (any world: SD
// users bring their own), exact duplicates dropped, then split in
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

// The prompts of one skill from [prompts] file: "skill<TAB>prompt" lines ('#' comments
// and blank lines skipped; lines of skills the config does not name ignored), in file
// order. Errors name the file and line.
static int file_prompts(const char *path, int skill, prompt_list *l) {
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len)) return -1;
    int line_no = 0, rc = 0;
    for (char *line = text, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if (!n || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab) { rc = err_set("%s:%d: expected 'skill<TAB>prompt'", path, line_no); break; }
        *tab = 0;
        int s = -1;
        for (int k = 0; k <= SKILL_STYLE; k++)
            if (!strcmp(line, skill_names[k])) s = k;
        if (s < 0) { rc = err_set("%s:%d: '%s' is not a skill (count, spatial, binding, dense, style)", path, line_no, line); break; }
        if (!tab[1]) { rc = err_set("%s:%d: empty prompt", path, line_no); break; }
        if (s != skill) continue;
        l->text = realloc(l->text, sizeof(char *) * (size_t)(l->n + 1));
        CHECK(l->text);
        l->text[l->n] = strdup(tab + 1);
        CHECK(l->text[l->n]);
        l->n++;
    }
    free(text);
    return rc;
}

// Drops exact duplicates in place (the splits must stay disjoint); returns the count.
static int drop_duplicates(prompt_list *l) {
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        int dup = 0;
        for (int j = 0; j < n && !dup; j++) dup = !strcmp(l->text[j], l->text[i]);
        if (dup) free(l->text[i]);
        else l->text[n++] = l->text[i];
    }
    return l->n = n;
}

int prompt_file_check(const pipeline_cfg *c) {
    int skills[SKILL_KINDS], ns, rc = 0;
    if (pipeline_skills(c, skills, &ns)) return -1;
    int want = c->n_test + c->n_val + c->n_train;
    for (int k = 0; k < ns && !rc; k++) {
        prompt_list l = {0};
        rc = file_prompts(c->prompt_file, skills[k], &l);
        if (!rc && drop_duplicates(&l) < want)
            rc = err_set("%s: skill %s: %d distinct prompts, the splits need %d (n_test + n_val + n_train)",
                         c->prompt_file, skill_names[skills[k]], l.n, want);
        prompt_list_free(&l);
    }
    return rc;
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
        prompt_gen_stats st = {0};
        if (c->prompt_file[0]) {
            if (file_prompts(c->prompt_file, s, &l)) {
                prompt_list_free(&l);
                return -1;
            }
        } else if (prompt_generate(s, want, (uint64_t)c->prompt_seed, &o, &l, &st)) {
            prompt_list_free(&l);
            return err_wrap("prompts of skill %s", skill_names[s]);
        }
        // Exact duplicates cannot pass a ROUGE-L threshold below 1, but a threshold of
        // 1 lets them through: drop them so that the splits stay disjoint.
        int n = drop_duplicates(&l), bad = n < want;
        if (bad) err_set("%s%sskill %s: %d distinct prompts, the splits need %d", c->prompt_file,
                         c->prompt_file[0] ? ": " : "", skill_names[s], n, want);
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
        if (c->prompt_file[0])
            log_line("prompts: %s: %d train, %d val, %d test (from %s)", skill_names[s], c->n_train,
                     c->n_val, c->n_test, c->prompt_file);
        else
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
