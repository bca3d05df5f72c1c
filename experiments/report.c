// results.json and results.md (report.h); report.html is in report_html.c.
#include "experiments/report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/fileio.h"

int report_is_merge_method(const char *name) {
    return !strcmp(name, "base") || !strcmp(name, "mixed") || !strcmp(name, "moe") ||
           !strcmp(name, "selma") || !strncmp(name, "merge", 5) || !strncmp(name, "selma-", 6);
}

int report_check(const run_results *r) {
    if (r->n_methods < 0 || r->n_methods > RESULTS_MAX_METHODS || r->n_curves < 0 ||
        r->n_curves > RESULTS_MAX_CURVES || r->n_grids < 0 || r->n_grids > RESULTS_MAX_GRIDS)
        return err_set("report %s: counts out of range (%d methods, %d curves, %d grids)",
                       r->run_dir, r->n_methods, r->n_curves, r->n_grids);
    for (int i = 0; i < r->n_methods; i++) {
        const method_result *m = &r->methods[i];
        if (!m->name[0]) return err_set("report %s: method %d has no name", r->run_dir, i);
        if (m->n_seeds < 0 || m->n_seeds > RESULTS_MAX_SEEDS)
            return err_set("report %s: method %s: %d seeds", r->run_dir, m->name, m->n_seeds);
        for (int j = 0; j < i; j++)
            if (!strcmp(r->methods[j].name, m->name))
                return err_set("report %s: method %s appears twice", r->run_dir, m->name);
    }
    for (int i = 0; i < r->n_curves; i++)
        if (r->curves[i].n < 0 || (r->curves[i].n > 0 && (!r->curves[i].step || !r->curves[i].loss)))
            return err_set("report %s: curve %s has no data", r->run_dir, r->curves[i].name);
    // the grids are checked before anything is written, so that a bad one leaves the
    // previous report whole rather than new tables next to an old page
    for (int i = 0; i < r->n_grids; i++) {
        char path[1100];
        report_grid_path(r, &r->grids[i], path, sizeof path);
        FILE *f = fopen(path, "rb");
        if (!f) return err_set("report: image grid %s: cannot open", path);
        static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        uint8_t head[8];
        int ok = fread(head, 1, 8, f) == 8 && !memcmp(head, sig, 8);
        fclose(f);
        if (!ok) return err_set("report: image grid %s is not a PNG", path);
    }
    return 0;
}

void report_grid_path(const run_results *r, const report_grid *g, char *buf, size_t n) {
    if (g->path[0] == '/') snprintf(buf, n, "%s", g->path);
    else snprintf(buf, n, "%s/%s", r->run_dir, g->path);
}

void report_fmt_pct(char *buf, size_t n, metric_ci m) {
    if (m.n <= 0) snprintf(buf, n, "-");
    else if (m.n == 1) snprintf(buf, n, "%.1f", 100 * m.mean);
    else snprintf(buf, n, "%.1f [%.1f, %.1f]", 100 * m.mean, 100 * m.lo, 100 * m.hi);
}

void report_fmt_quality(char *buf, size_t n, metric_ci m) {
    if (m.n <= 0) snprintf(buf, n, "-");
    else if (m.n == 1) snprintf(buf, n, "%.3f", m.mean);
    else snprintf(buf, n, "%.3f [%.3f, %.3f]", m.mean, m.lo, m.hi);
}

const char *report_label(const method_result *m) { return m->label[0] ? m->label : m->name; }

// ---------------------------------------------------------------- results.json

static cJSON *ci_json(metric_ci m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", m.mean);
    cJSON_AddNumberToObject(o, "lo", m.lo);
    cJSON_AddNumberToObject(o, "hi", m.hi);
    cJSON_AddNumberToObject(o, "n", m.n);
    return o;
}

// floats as the shortest decimal that reads back as the same float (cJSON would print
// the double nearest the float, 0.100000001490116 for 0.1f); empty arrays too
static cJSON *float_array(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.9g", v[i]);
        for (int digits = 6; digits < 9; digits++) {
            char shorter[32];
            snprintf(shorter, sizeof shorter, "%.*g", digits, v[i]);
            if (strtof(shorter, NULL) == v[i]) { memcpy(buf, shorter, sizeof buf); break; }
        }
        cJSON_AddItemToArray(a, cJSON_CreateNumber(strtod(buf, NULL)));
    }
    return a;
}

static cJSON *double_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *method_json(const method_result *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "label", report_label(m));
    cJSON_AddNumberToObject(o, "n_seeds", m->n_seeds);
    if (m->dsg.n > 0) cJSON_AddItemToObject(o, "dsg", ci_json(m->dsg));
    else cJSON_AddNullToObject(o, "dsg");  // not scored here: see "export"
    if (m->tifa.n > 0) cJSON_AddItemToObject(o, "tifa", ci_json(m->tifa));
    else cJSON_AddNullToObject(o, "tifa");
    cJSON_AddItemToObject(o, "quality", ci_json(m->quality));
    cJSON *seeds = cJSON_AddObjectToObject(o, "seeds");
    cJSON_AddItemToObject(seeds, "dsg", double_array(m->seed_dsg, m->n_seeds));
    cJSON_AddItemToObject(seeds, "tifa", double_array(m->seed_tifa, m->n_seeds));
    if (m->exported) {
        cJSON *e = cJSON_AddArrayToObject(o, "export");
        for (int k = 0; k < m->n_seeds; k++) {
            char dir[160];
            snprintf(dir, sizeof dir, "export/%s/seed%d", m->name, k);
            cJSON_AddItemToArray(e, cJSON_CreateString(dir));
        }
    }
    cJSON *skills = cJSON_AddObjectToObject(o, "skills");
    for (int s = 0; s < SKILL_KINDS; s++) {
        if (m->skill_dsg[s].n <= 0 && m->skill_tifa[s].n <= 0) continue;
        cJSON *k = cJSON_AddObjectToObject(skills, skill_names[s]);
        cJSON_AddItemToObject(k, "dsg", ci_json(m->skill_dsg[s]));
        cJSON_AddItemToObject(k, "tifa", ci_json(m->skill_tifa[s]));
    }
    return o;
}

int report_write_json(const run_results *r, const char *path) {
    if (report_check(r)) return -1;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "title", r->title);
    cJSON_AddStringToObject(root, "note", r->note);
    cJSON_AddStringToObject(root, "quality_metric", r->quality_metric);
    cJSON *methods = cJSON_AddObjectToObject(root, "methods");
    for (int i = 0; i < r->n_methods; i++)
        cJSON_AddItemToObject(methods, r->methods[i].name, method_json(&r->methods[i]));
    cJSON *curves = cJSON_AddArrayToObject(root, "curves");
    for (int i = 0; i < r->n_curves; i++) {
        const loss_curve *c = &r->curves[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c->name);
        cJSON_AddItemToObject(o, "step", float_array(c->step, c->n));
        cJSON_AddItemToObject(o, "loss", float_array(c->loss, c->n));
        cJSON_AddItemToArray(curves, o);
    }
    cJSON *grids = cJSON_AddArrayToObject(root, "grids");
    for (int i = 0; i < r->n_grids; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", r->grids[i].path);
        cJSON_AddStringToObject(o, "caption", r->grids[i].caption);
        cJSON_AddItemToArray(grids, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    CHECK(text);
    size_t n = strlen(text);
    text[n] = '\n';  // cJSON_Print's NUL becomes the final newline
    int rc = atomic_write(path, text, n + 1);
    cJSON_free(text);
    return rc;
}

// ---------------------------------------------------------------- results.md

// a table cell: '|' escaped, line breaks as spaces
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n' || *s == '\r') fputc(' ', f);
        else fputc(*s, f);
    }
}

int report_skills(const run_results *r, int *skills) {
    int n = 0;
    for (int s = 0; s < SKILL_KINDS; s++)
        for (int i = 0; i < r->n_methods; i++)
            if (r->methods[i].skill_dsg[s].n > 0 || r->methods[i].skill_tifa[s].n > 0) {
                skills[n++] = s;
                break;
            }
    return n;
}

static void md_overall(FILE *f, const run_results *r, int merge_only) {
    fputs("| method | seeds | DSG | TIFA | quality (KID, lower is better) |\n", f);
    fputs("|---|---|---|---|---|\n", f);
    for (int i = 0; i < r->n_methods; i++) {
        const method_result *m = &r->methods[i];
        if (merge_only && !report_is_merge_method(m->name)) continue;
        char dsg[64], tifa[64], q[64];
        report_fmt_pct(dsg, sizeof dsg, m->dsg);
        report_fmt_pct(tifa, sizeof tifa, m->tifa);
        report_fmt_quality(q, sizeof q, m->quality);
        fputs("| ", f);
        md_cell(f, report_label(m));
        fprintf(f, " | %d | %s | %s | %s |\n", m->n_seeds, dsg, tifa, q);
    }
}

static void md_skills(FILE *f, const run_results *r, const int *skills, int n_skills, int tifa) {
    fputs("| method |", f);
    for (int k = 0; k < n_skills; k++) fprintf(f, " %s |", skill_names[skills[k]]);
    fputs("\n|---|", f);
    for (int k = 0; k < n_skills; k++) fputs("---|", f);
    fputc('\n', f);
    for (int i = 0; i < r->n_methods; i++) {
        const method_result *m = &r->methods[i];
        fputs("| ", f);
        md_cell(f, report_label(m));
        fputs(" |", f);
        for (int k = 0; k < n_skills; k++) {
            char c[64];
            report_fmt_pct(c, sizeof c, tifa ? m->skill_tifa[skills[k]] : m->skill_dsg[skills[k]]);
            fprintf(f, " %s |", c);
        }
        fputc('\n', f);
    }
}

static int merge_rows(const run_results *r) {
    int n = 0;
    for (int i = 0; i < r->n_methods; i++) n += report_is_merge_method(r->methods[i].name);
    return n;
}

int report_write_md(const run_results *r, const char *path) {
    if (report_check(r)) return -1;
    afile a;
    if (afile_open(&a, path)) return -1;
    FILE *f = a.f;
    fprintf(f, "# %s\n\n", r->title[0] ? r->title : "selma run");
    if (r->note[0]) fprintf(f, "%s\n\n", r->note);
    fputs("Scores in percent: mean [95% interval of the mean over seeds, Student's t].\n", f);
    if (r->quality_metric[0]) fprintf(f, "Quality: %s.\n", r->quality_metric);
    fputs("\n## Faithfulness on held-out test prompts (all skills)\n\n", f);
    md_overall(f, r, 0);
    int skills[SKILL_KINDS], n_skills = report_skills(r, skills);
    if (n_skills > 0) {
        fputs("\n## DSG per skill\n\n", f);
        md_skills(f, r, skills, n_skills, 0);
        fputs("\n## TIFA per skill\n\n", f);
        md_skills(f, r, skills, n_skills, 1);
    }
    if (merge_rows(r) >= 2) {
        fputs("\n## Merging ablation\n\n", f);
        fputs("One LoRA on all skills' data (mixed), a mixture of LoRA experts (moe) and "
              "merges of the skill experts (selma, merge-*), against the base model.\n\n", f);
        md_overall(f, r, 1);
    }
    int exported = 0;
    for (int i = 0; i < r->n_methods; i++) exported += r->methods[i].exported;
    if (exported) {
        fputs("\n## Export bundles for external TIFA / DSG\n\n", f);
        fputs("Test images with their prompts and question lists (`prompts.json`, "
              "`tifa_questions.json` in TIFA's format, `dsg_questions.csv` in DSG's, "
              "`manifest.json`); a method without scores above is scored from these.\n\n", f);
        for (int i = 0; i < r->n_methods; i++)
            if (r->methods[i].exported)
                for (int k = 0; k < r->methods[i].n_seeds; k++)
                    fprintf(f, "- %s seed %d: `export/%s/seed%d/`\n", r->methods[i].name, k, r->methods[i].name, k);
    }
    if (r->n_grids > 0) {
        fputs("\n## Image grids\n\n", f);
        for (int i = 0; i < r->n_grids; i++) {
            fputs("- [", f);
            md_cell(f, r->grids[i].caption[0] ? r->grids[i].caption : r->grids[i].path);
            fprintf(f, "](%s)\n", r->grids[i].path);
        }
    }
    return afile_commit(&a);
}

int report_write(const run_results *r) {
    if (report_check(r)) return -1;
    char path[600];
    const char *names[3] = {"results.json", "results.md", "report.html"};
    int (*writers[3])(const run_results *, const char *) = {report_write_json, report_write_md,
                                                            report_write_html};
    for (int i = 0; i < 3; i++) {
        if (snprintf(path, sizeof path, "%s/%s", r->run_dir, names[i]) >= (int)sizeof path)
            return err_set("report: run directory too long: %s", r->run_dir);
        if (writers[i](r, path)) return -1;
    }
    return 0;
}
