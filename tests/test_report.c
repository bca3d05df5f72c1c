// Statistics (metric_ci_from against Student's t table values) and the run report
// (experiments/report.h): a hand-made run of 3 methods x 2 seeds with loss curves and an
// image grid is written into a temporary directory and read back -- results.json with
// cJSON, results.md line by line, report.html for its charts, escaping and the embedded
// PNG. SELMA_REPORT_KEEP=1 keeps the directory (to look at the page in a browser).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data/image_io.h"
#include "experiments/report.h"
#include "experiments/results.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

// t_{0.975, n-1} from the standard table: the interval's half width over the standard
// error. Samples 0, 1, ..., n-1 scaled to sd 1 make the standard error 1/sqrt(n).
static void test_ci(void) {
    const struct { int n; double t; } table[] = {
        {2, 12.7062}, {3, 4.3027}, {4, 3.1824}, {5, 2.7764}, {6, 2.5706}, {11, 2.2281},
        {21, 2.0860}, {31, 2.0423}, {61, 2.0003}, {121, 1.9799}};
    for (size_t k = 0; k < sizeof table / sizeof table[0]; k++) {
        int n = table[k].n;
        double x[128], sd = sqrt(n * (n + 1) / 12.0);  // sd of 0..n-1
        for (int i = 0; i < n; i++) x[i] = 5 + i / sd;
        metric_ci m = metric_ci_from(x, n);
        double mean = 5 + (n - 1) / 2.0 / sd;
        EXPECT_NEAR(m.mean, mean, 1e-12, 0);
        EXPECT(m.n == n, "n %d", m.n);
        EXPECT_NEAR((m.hi - m.mean) * sqrt(n), table[k].t, 1e-4, 0);
        EXPECT_NEAR(m.mean - m.lo, m.hi - m.mean, 1e-12, 0);
    }
    double one = 0.25;
    metric_ci m = metric_ci_from(&one, 1);
    EXPECT_TRUE(m.n == 1 && m.mean == 0.25 && m.lo == 0.25 && m.hi == 0.25);
    m = metric_ci_from(NULL, 0);
    EXPECT_TRUE(m.n == 0);
    double same[3] = {0.5, 0.5, 0.5};
    m = metric_ci_from(same, 3);
    EXPECT_TRUE(m.lo == 0.5 && m.hi == 0.5);
}

static void test_base64(void) {
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char buf[16];
        size_t n = base64_encode((const uint8_t *)in[i], strlen(in[i]), buf);
        EXPECT(!strcmp(buf, out[i]) && n == strlen(out[i]), "base64(%s) = %s", in[i], buf);
    }
}

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

// decodes n base64 characters (a multiple of 4) into out; -1 on a bad character
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    long o = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (s[i + 2] != '=') out[o++] = (uint8_t)(w >> 8);
        if (s[i + 3] != '=') out[o++] = (uint8_t)w;
    }
    return o;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void set_method(method_result *m, const char *name, const char *label, double d0,
                       double d1, double t0, double t1, double quality) {
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->label, sizeof m->label, "%s", label);
    m->n_seeds = 2;
    m->seed_dsg[0] = d0, m->seed_dsg[1] = d1, m->seed_tifa[0] = t0, m->seed_tifa[1] = t1;
    m->dsg = metric_ci_from(m->seed_dsg, 2);
    m->tifa = metric_ci_from(m->seed_tifa, 2);
    m->quality = (metric_ci){quality, quality - 0.1, quality + 0.1, 2};
    // two skills evaluated: count a little below overall, spatial a little above
    double c[2] = {d0 - 0.05, d1 - 0.05}, s[2] = {d0 + 0.05, d1 + 0.05};
    m->skill_dsg[SKILL_COUNT] = m->skill_tifa[SKILL_COUNT] = metric_ci_from(c, 2);
    m->skill_dsg[SKILL_SPATIAL] = m->skill_tifa[SKILL_SPATIAL] = metric_ci_from(s, 2);
}

static void make_run(run_results *r, const char *dir) {
    memset(r, 0, sizeof *r);
    snprintf(r->title, sizeof r->title, "quick <test> & co");
    snprintf(r->run_dir, sizeof r->run_dir, "%s", dir);
    snprintf(r->note, sizeof r->note, "scaled down: 2 seeds, \"tiny\" experts");
    snprintf(r->quality_metric, sizeof r->quality_metric, "KID on shapes features");
    r->n_methods = 3;
    // base: DSG 0.60/0.62 -> mean 61.0, se 1.0, t 12.706 -> [48.3, 73.7];
    //       TIFA 0.70/0.74 -> 72.0, se 2.0 -> [46.6, 97.4]
    set_method(&r->methods[0], "base", "base <v1> & co", 0.60, 0.62, 0.70, 0.74, 0.5);
    set_method(&r->methods[1], "mixed", "mixed | one LoRA", 0.64, 0.64, 0.75, 0.77, 0.6);
    set_method(&r->methods[2], "selma", "SELMA (merge: sum of 5 experts)", 0.70, 0.72, 0.80, 0.80, 0.4);
    r->n_curves = 2;
    for (int c = 0; c < 2; c++) {
        loss_curve *lc = &r->curves[c];
        snprintf(lc->name, sizeof lc->name, "expert-count seed %d", c);
        lc->n = 50;
        lc->step = malloc(50 * sizeof(float)), lc->loss = malloc(50 * sizeof(float));
        for (int i = 0; i < 50; i++) lc->step[i] = 10.0f * i, lc->loss[i] = 0.1f + 0.5f / (1 + i + c);
    }
    r->n_grids = 1;
    snprintf(r->grids[0].path, sizeof r->grids[0].path, "grid.png");
    snprintf(r->grids[0].caption, sizeof r->grids[0].caption, "4 prompts, one row per <method>");
}

static void check_json(const run_results *r, const char *dir) {
    char path[600], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/results.json", dir);
    EXPECT_TRUE(file_read_all(path, &text, &n) == 0);
    cJSON *root = cJSON_Parse(text);
    EXPECT(root != NULL, "results.json does not parse");
    if (!root) { free(text); return; }
    EXPECT_TRUE(!strcmp(cJSON_GetObjectItem(root, "title")->valuestring, r->title));
    EXPECT_TRUE(!strcmp(cJSON_GetObjectItem(root, "note")->valuestring, r->note));
    EXPECT_TRUE(!strcmp(cJSON_GetObjectItem(root, "quality_metric")->valuestring, r->quality_metric));
    cJSON *methods = cJSON_GetObjectItem(root, "methods");
    EXPECT_TRUE(cJSON_GetArraySize(methods) == 3);
    for (int i = 0; i < r->n_methods; i++) {
        const method_result *m = &r->methods[i];
        cJSON *o = cJSON_GetObjectItem(methods, m->name);
        EXPECT(o != NULL, "method %s missing", m->name);
        if (!o) continue;
        EXPECT_TRUE(!strcmp(cJSON_GetObjectItem(o, "label")->valuestring, m->label));
        const char *keys[3] = {"dsg", "tifa", "quality"};
        const metric_ci *want[3] = {&m->dsg, &m->tifa, &m->quality};
        for (int k = 0; k < 3; k++) {
            cJSON *c = cJSON_GetObjectItem(o, keys[k]);
            EXPECT_NEAR(cJSON_GetObjectItem(c, "mean")->valuedouble, want[k]->mean, 1e-12, 1e-12);
            EXPECT_NEAR(cJSON_GetObjectItem(c, "lo")->valuedouble, want[k]->lo, 1e-12, 1e-12);
            EXPECT_NEAR(cJSON_GetObjectItem(c, "hi")->valuedouble, want[k]->hi, 1e-12, 1e-12);
            EXPECT_TRUE(cJSON_GetObjectItem(c, "n")->valueint == 2);
        }
        cJSON *skills = cJSON_GetObjectItem(o, "skills");
        EXPECT_TRUE(cJSON_GetArraySize(skills) == 2 && !cJSON_GetObjectItem(skills, "dense"));
        cJSON *sp = cJSON_GetObjectItem(cJSON_GetObjectItem(skills, "spatial"), "tifa");
        EXPECT_NEAR(cJSON_GetObjectItem(sp, "hi")->valuedouble, m->skill_tifa[SKILL_SPATIAL].hi, 1e-12, 1e-12);
        cJSON *seeds = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "seeds"), "dsg");
        EXPECT_TRUE(cJSON_GetArraySize(seeds) == 2 &&
                    cJSON_GetArrayItem(seeds, 1)->valuedouble == m->seed_dsg[1]);
    }
    cJSON *curves = cJSON_GetObjectItem(root, "curves");
    EXPECT_TRUE(cJSON_GetArraySize(curves) == 2);
    cJSON *loss = cJSON_GetObjectItem(cJSON_GetArrayItem(curves, 1), "loss");
    EXPECT_TRUE(cJSON_GetArraySize(loss) == 50 &&
                (float)cJSON_GetArrayItem(loss, 7)->valuedouble == r->curves[1].loss[7]);
    cJSON *grids = cJSON_GetObjectItem(root, "grids");
    EXPECT_TRUE(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(grids, 0), "path")->valuestring, "grid.png"));
    cJSON_Delete(root);
    free(text);
}

static void check_md(const char *dir) {
    char path[600], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/results.md", dir);
    EXPECT_TRUE(file_read_all(path, &text, &n) == 0);
    // the overall table, then the merge ablation (all three here are merge methods)
    EXPECT(count(text, "| base <v1> & co | 2 | 61.0 [48.3, 73.7] | 72.0 [46.6, 97.4] | 0.500 [0.400, 0.600] |\n") == 2,
           "base row:\n%s", text);
    EXPECT(count(text, "| mixed \\| one LoRA | 2 | 64.0 [64.0, 64.0] | 76.0 [63.3, 88.7] | 0.600 [0.500, 0.700] |\n") == 2,
           "mixed row");
    EXPECT(count(text, "| SELMA (merge: sum of 5 experts) | 2 | 71.0 [58.3, 83.7] | 80.0 [80.0, 80.0] | 0.400 [0.300, 0.500] |\n") == 2,
           "selma row");
    // per skill: count = overall - 5 points, same interval width
    EXPECT(count(text, "| base <v1> & co | 56.0 [43.3, 68.7] | 66.0 [53.3, 78.7] |\n") == 2, "base skills");
    EXPECT_TRUE(strstr(text, "| method | count | spatial |\n") != NULL);
    EXPECT_TRUE(strstr(text, "## Merging ablation") != NULL && strstr(text, "(grid.png)") != NULL);
    free(text);
}

static void check_html(const char *dir, const uint8_t *png, size_t png_n) {
    char path[600], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/report.html", dir);
    EXPECT_TRUE(file_read_all(path, &text, &n) == 0);
    // charts: DSG and TIFA per skill (3 groups x 3 methods each), quality (3), loss
    EXPECT(count(text, "<svg") == 4, "%d svg", count(text, "<svg"));
    EXPECT(count(text, "</svg>") == 4, "svg not closed");
    EXPECT(count(text, "class=\"curve\"") == 2, "%d curves", count(text, "class=\"curve\""));
    EXPECT(count(text, "class=\"bar\"") == 21, "%d bars", count(text, "class=\"bar\""));
    EXPECT(count(text, "class=\"err\"") == 21, "%d error bars", count(text, "class=\"err\""));
    EXPECT(strstr(text, "base &lt;v1&gt; &amp; co") != NULL, "label not escaped");
    EXPECT(strstr(text, "<v1>") == NULL && strstr(text, "<test>") == NULL && strstr(text, "<method>") == NULL,
           "raw '<' from a string");
    EXPECT(strstr(text, "&quot;tiny&quot;") != NULL, "note not escaped");
    EXPECT(strstr(text, "<script") == NULL, "scripts");
    EXPECT_TRUE(strstr(text, "<td>61.0<span class=\"ci\">[48.3, 73.7]</span></td>") != NULL);
    const char *uri = "data:image/png;base64,";
    char *p = strstr(text, uri);
    EXPECT(p != NULL, "no PNG data URI");
    if (p) {
        p += strlen(uri);
        size_t len = strcspn(p, "\"");
        uint8_t *dec = malloc(len);
        long got = b64_decode(p, len, dec);
        EXPECT(len % 4 == 0 && got == (long)png_n && !memcmp(dec, png, png_n),
               "data URI decodes to %ld bytes, PNG has %zu", got, png_n);
        free(dec);
    }
    free(text);
}

// no "<name>.tmp.<pid>" left behind by a failed write
static int temporaries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_report(void) {
    char dir[] = "/tmp/selma-report-XXXXXX";
    if (!mkdtemp(dir)) { EXPECT(0, "mkdtemp"); return; }
    static run_results r;
    make_run(&r, dir);
    // the grid: 4 tiles of 8x8 in 2 columns
    uint8_t tiles[4 * 8 * 8 * 3];
    for (size_t i = 0; i < sizeof tiles; i++) tiles[i] = (uint8_t)(i * 37);
    const char *labels[4] = {"a", "b", "c", "d"};
    char path[600];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    EXPECT_TRUE(png_write_grid(path, tiles, 4, 8, 8, 2, 3, labels) == 0);
    char *png;
    size_t png_n;
    EXPECT_TRUE(file_read_all(path, &png, &png_n) == 0);

    if (report_write(&r)) fprintf(stderr, "report_write: %s\n", err_msg());
    check_json(&r, dir);
    check_md(dir);
    check_html(dir, (const uint8_t *)png, png_n);

    // bad input: a duplicate name, a grid that is missing or not a PNG; nothing half-written
    snprintf(r.methods[2].name, sizeof r.methods[2].name, "base");
    EXPECT_TRUE(report_write(&r) == -1 && strstr(err_msg(), "twice"));
    snprintf(r.methods[2].name, sizeof r.methods[2].name, "selma");
    snprintf(r.grids[0].path, sizeof r.grids[0].path, "missing.png");
    EXPECT_TRUE(report_write(&r) == -1 && strstr(err_msg(), "missing.png"));
    snprintf(r.grids[0].path, sizeof r.grids[0].path, "results.md");
    EXPECT_TRUE(report_write(&r) == -1 && strstr(err_msg(), "not a PNG"));
    EXPECT(temporaries(dir) == 0, "temporary files left");
    check_md(dir);  // the failed writes left the first report as it was

    run_results_free(&r);
    EXPECT_TRUE(r.n_curves == 0 && r.curves[0].step == NULL && r.curves[1].loss == NULL);
    free(png);
    const char *keep = getenv("SELMA_REPORT_KEEP");
    if (keep && keep[0] == '1') {
        printf("report kept in %s\n", dir);
        return;
    }
    const char *files[] = {"results.json", "results.md", "report.html", "grid.png"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
}

int main(void) {
    test_ci();
    test_base64();
    test_report();
    return check_report("test_report");
}
