// report.html (report.h): one self-contained page, tables, inline SVG charts and the
// image grids as base64 data URIs, so that the file can be mailed or archived alone.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/report.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

size_t base64_encode(const uint8_t *in, size_t n, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18], out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63], out[o++] = tab[v & 63];
    }
    if (i < n) {  // 1 or 2 bytes left: pad to 4 characters with '='
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18], out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "max-width:960px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:26px;margin-bottom:.2em}h2{font-size:19px;margin-top:1.8em;"
    "border-bottom:1px solid #ddd;padding-bottom:.2em}h3{font-size:15px;margin-bottom:.3em}"
    ".note{background:#f6f8fa;border-left:4px solid #4e79a7;padding:.6em 1em;margin:1em 0}"
    ".meta{color:#555;font-size:13px}"
    ".scroll{overflow-x:auto}"
    "table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:14px}"
    "th,td{padding:5px 12px;border-bottom:1px solid #e3e3e3;text-align:right;vertical-align:top}"
    "th:first-child,td:first-child{text-align:left}"
    "thead th{border-bottom:2px solid #888;white-space:nowrap}"
    "tbody tr:nth-child(even){background:#fafafa}"
    "td .ci{display:block;font-size:11px;color:#777;white-space:nowrap}"
    "td.best{font-weight:bold}"
    "svg.chart{display:block;max-width:100%;height:auto;margin:.8em 0}"
    "figure{margin:1em 0}figure img{image-rendering:pixelated;max-width:100%;"
    "border:1px solid #ddd}figcaption{color:#555;font-size:13px}"
    "footer{margin-top:3em;color:#888;font-size:12px}";

// a cell "mean" over "[lo, hi]"; best: the column's best mean, bold
static void cell(FILE *f, metric_ci m, int quality, int best) {
    fputs(best ? "<td class=\"best\">" : "<td>", f);
    if (m.n <= 0) { fputs("-</td>", f); return; }
    if (quality) fprintf(f, "%.3f", m.mean);
    else fprintf(f, "%.1f", 100 * m.mean);
    if (m.n > 1) {
        if (quality) fprintf(f, "<span class=\"ci\">[%.3f, %.3f]</span>", m.lo, m.hi);
        else fprintf(f, "<span class=\"ci\">[%.1f, %.1f]</span>", 100 * m.lo, 100 * m.hi);
    }
    fputs("</td>", f);
}

// which metric of a method a table column shows: 0 DSG, 1 TIFA, 2 quality; skill < 0: overall
static metric_ci pick(const method_result *m, int metric, int skill) {
    if (metric == 2) return m->quality;
    if (skill < 0) return metric ? m->tifa : m->dsg;
    return metric ? m->skill_tifa[skill] : m->skill_dsg[skill];
}

// index of the best mean among the rows shown (highest; lowest for quality), -1: none
static int best_row(const run_results *r, const int *rows, int n_rows, int metric, int skill) {
    int best = -1;
    for (int i = 0; i < n_rows; i++) {
        metric_ci m = pick(&r->methods[rows[i]], metric, skill);
        if (m.n <= 0) continue;
        double bm = best < 0 ? 0 : pick(&r->methods[rows[best]], metric, skill).mean;
        if (best < 0 || (metric == 2 ? m.mean < bm : m.mean > bm)) best = i;
    }
    return n_rows > 1 ? best : -1;
}

// columns: (metric, skill) pairs with their headings
typedef struct column {
    int metric, skill;
    const char *head;
} column;

static void table(FILE *f, const run_results *r, const int *rows, int n_rows,
                  const column *cols, int n_cols) {
    fputs("<div class=\"scroll\"><table>\n<thead><tr><th>method</th><th>seeds</th>", f);
    for (int c = 0; c < n_cols; c++) {
        fputs("<th>", f);
        html_escape(f, cols[c].head);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    int best[SKILL_KINDS + 3];
    CHECK(n_cols <= SKILL_KINDS + 3);
    for (int c = 0; c < n_cols; c++) best[c] = best_row(r, rows, n_rows, cols[c].metric, cols[c].skill);
    for (int i = 0; i < n_rows; i++) {
        const method_result *m = &r->methods[rows[i]];
        fputs("<tr><td>", f);
        html_escape(f, report_label(m));
        fprintf(f, "</td><td>%d</td>", m->n_seeds);
        for (int c = 0; c < n_cols; c++)
            cell(f, pick(m, cols[c].metric, cols[c].skill), cols[c].metric == 2, best[c] == i);
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table></div>\n", f);
}

static void tables(FILE *f, const run_results *r, const int *skills, int n_skills) {
    int all[RESULTS_MAX_METHODS] = {0}, merge[RESULTS_MAX_METHODS] = {0}, n_merge = 0;
    for (int i = 0; i < r->n_methods; i++) {
        all[i] = i;
        if (report_is_merge_method(r->methods[i].name)) merge[n_merge++] = i;
    }
    const column overall[3] = {{0, -1, "DSG"}, {1, -1, "TIFA"}, {2, -1, "quality (KID, lower is better)"}};
    fputs("<h2>Faithfulness on held-out test prompts</h2>\n", f);
    table(f, r, all, r->n_methods, overall, 3);
    if (n_skills > 0) {
        column per[SKILL_KINDS];
        for (int metric = 0; metric < 2; metric++) {
            for (int k = 0; k < n_skills; k++) per[k] = (column){metric, skills[k], skill_names[skills[k]]};
            fputs(metric ? "<h3>TIFA per skill</h3>\n" : "<h3>DSG per skill</h3>\n", f);
            table(f, r, all, r->n_methods, per, n_skills);
        }
    }
    if (n_merge >= 2) {
        fputs("<h2>Merging ablation</h2>\n<p>One LoRA on all skills' data (mixed), a mixture of "
              "LoRA experts (moe) and merges of the skill experts (selma, merge-*), against the "
              "base model.</p>\n", f);
        table(f, r, merge, n_merge, overall, 3);
    }
}

static void charts(FILE *f, const run_results *r, const int *skills, int n_skills) {
    int n_groups = n_skills + 1, nm = r->n_methods;
    const char *groups[SKILL_KINDS + 1], *bars[RESULTS_MAX_METHODS];
    for (int k = 0; k < n_skills; k++) groups[k] = skill_names[skills[k]];
    groups[n_skills] = "all skills";
    for (int i = 0; i < nm; i++) bars[i] = report_label(&r->methods[i]);
    metric_ci *v = calloc((size_t)n_groups * (nm > 0 ? nm : 1), sizeof(metric_ci));
    CHECK(v);
    fputs("<h2>Scores per skill</h2>\n", f);
    for (int metric = 0; metric < 2; metric++) {
        for (int g = 0; g < n_groups; g++)
            for (int i = 0; i < nm; i++)
                v[g * nm + i] = pick(&r->methods[i], metric, g < n_skills ? skills[g] : -1);
        svg_bar_chart(f, metric ? "TIFA per skill (mean and 95% interval over seeds)"
                                : "DSG per skill (mean and 95% interval over seeds)",
                      metric ? "TIFA (%)" : "DSG (%)", groups, n_groups, bars, nm, v, 100, 1);
    }
    int any_quality = 0;
    for (int i = 0; i < nm; i++) any_quality |= r->methods[i].quality.n > 0;
    if (any_quality) {
        for (int i = 0; i < nm; i++) v[i] = r->methods[i].quality;
        const char *one[1] = {"test prompts"};
        fputs("<h2>Image quality</h2>\n", f);
        svg_bar_chart(f, "Image quality: KID to ground-truth renders (lower is better)", "KID",
                      one, 1, bars, nm, v, 1, 0);
    }
    free(v);
    if (r->n_curves > 0) {
        svg_series *s = malloc((size_t)r->n_curves * sizeof(*s));
        CHECK(s);
        for (int i = 0; i < r->n_curves; i++)
            s[i] = (svg_series){r->curves[i].name, r->curves[i].n, r->curves[i].step, r->curves[i].loss};
        fputs("<h2>Training loss</h2>\n", f);
        svg_line_chart(f, "Training loss", "step", "loss", s, r->n_curves);
        free(s);
    }
}

// one grid: the PNG's bytes as a data URI
static int grid(FILE *f, const run_results *r, const report_grid *g) {
    char path[1100];
    report_grid_path(r, g, path, sizeof path);
    char *data;
    size_t n;
    if (file_read_all(path, &data, &n)) return err_wrap("report: image grid");
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 8 || memcmp(data, sig, 8)) {
        free(data);
        return err_set("report: image grid %s is not a PNG", path);
    }
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    CHECK(b64);
    size_t len = base64_encode((const uint8_t *)data, n, b64);
    // small grids (32x32 tiles) are shown enlarged, whole pixels at a time (IHDR's
    // width is the big-endian word at byte 16)
    uint32_t w = n >= 24 ? (uint32_t)(uint8_t)data[16] << 24 | (uint32_t)(uint8_t)data[17] << 16 |
                               (uint32_t)(uint8_t)data[18] << 8 | (uint8_t)data[19] : 0;
    uint32_t zoom = w > 0 && w < 450 ? 900 / w : 1;
    fputs("<figure><img", f);
    if (zoom > 1) fprintf(f, " width=\"%u\"", w * (zoom > 4 ? 4 : zoom));
    fputs(" alt=\"", f);
    html_escape(f, g->caption[0] ? g->caption : g->path);
    fputs("\" src=\"data:image/png;base64,", f);
    fwrite(b64, 1, len, f);
    fputs("\"><figcaption>", f);
    html_escape(f, g->caption);
    fputs(g->caption[0] ? " (" : "(", f);
    html_escape(f, g->path);
    fputs(")</figcaption></figure>\n", f);
    free(b64);
    free(data);
    return 0;
}

int report_write_html(const run_results *r, const char *path) {
    if (report_check(r)) return -1;
    afile a;
    if (afile_open(&a, path)) return -1;
    FILE *f = a.f;
    const char *title = r->title[0] ? r->title : "selma run";
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>", f);
    html_escape(f, title);
    fprintf(f, " - selma report</title>\n<style>%s</style>\n</head><body>\n<h1>", css);
    html_escape(f, title);
    fputs("</h1>\n", f);
    if (r->note[0]) {
        fputs("<p class=\"note\">", f);
        html_escape(f, r->note);
        fputs("</p>\n", f);
    }
    fputs("<p class=\"meta\">Scores in percent: mean and, below it, the 95% interval of the "
          "mean over seeds (Student's t); best in bold.", f);
    if (r->quality_metric[0]) {
        fputs(" Quality: ", f);
        html_escape(f, r->quality_metric);
        fputs(".", f);
    }
    fputs("</p>\n", f);
    int skills[SKILL_KINDS], n_skills = report_skills(r, skills);
    tables(f, r, skills, n_skills);
    charts(f, r, skills, n_skills);
    if (r->n_grids > 0) fputs("<h2>Images</h2>\n", f);
    for (int i = 0; i < r->n_grids; i++)
        if (grid(f, r, &r->grids[i])) {
            afile_abort(&a);
            return -1;
        }
    fputs("<footer>written by selma " SELMA_VERSION "</footer>\n</body></html>\n", f);
    return afile_commit(&a);
}
