// Writing a Stable Diffusion model back as a diffusers folder (bundle_save of a world
// "sd" model, e.g. `selma fold` of a merged adapter into SD): the folder it was loaded
// from, copied file by file, with the UNet's and the text encoder's weights written
// from the model. See bundle.h.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

// The weight files bundle_save writes itself: any serialization of the UNet's or the
// text encoder's weights in the source (safetensors, .bin, fp16 variants) would be stale.
static int is_weights(const char *rel) {
    const char *name = strrchr(rel, '/');
    if (!name) return 0;
    size_t dl = (size_t)(name - rel);
    name++;
    if (dl == 4 && !strncmp(rel, "unet", 4)) return !strncmp(name, "diffusion_pytorch_model", 23);
    if (dl == 12 && !strncmp(rel, "text_encoder", 12))
        return !strncmp(name, "model", 5) || !strncmp(name, "pytorch_model", 13);
    return 0;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return err_set("%s: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return err_set("%s: %s", to, strerror(errno));
    }
    static char buf[1 << 20];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = err_set("%s: write: %s", to, strerror(errno));
    if (!rc && ferror(in)) rc = err_set("%s: read error", from);
    if (!rc && (fflush(out) || fsync(fileno(out)))) rc = err_set("%s: %s", to, strerror(errno));
    fclose(in);
    if (fclose(out) && !rc) rc = err_set("%s: close: %s", to, strerror(errno));
    return rc;
}

// Copies src/rel into dst/rel, recursively, skipping is_weights files and symlinks to
// directories outside (a symlinked file, as the Hugging Face cache makes, is copied).
static int copy_tree(const char *src, const char *dst, const char *rel) {
    char from[8192], to[8192];
    snprintf(from, sizeof from, "%s%s%s", src, *rel ? "/" : "", rel);
    snprintf(to, sizeof to, "%s%s%s", dst, *rel ? "/" : "", rel);
    if (mkdir_p(to)) return -1;
    DIR *d = opendir(from);
    if (!d) return err_set("%s: %s", from, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;  // ".", "..", hidden caches (.cache, .git)
        char sub[4096], path[8192];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(path, sizeof path, "%s/%s", src, sub);
        struct stat st;
        if (stat(path, &st)) rc = err_set("%s: %s", path, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = copy_tree(src, dst, sub);
        else if (S_ISREG(st.st_mode) && !is_weights(sub)) {
            char out[8192];
            snprintf(out, sizeof out, "%s/%s", dst, sub);
            rc = copy_file(path, out);
        }
    }
    closedir(d);
    return rc ? rc : dir_fsync(to);
}

int sd_save_files(const t2i_model *m, const char *tmp, const char *training_json) {
    if (!m->source[0] || !sd_is_pipeline(m->source))
        return err_set("an sd model is saved from the pipeline folder it was loaded from (source '%s')", m->source);
    if (copy_tree(m->source, tmp, "")) return -1;
    char path[8192];
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", tmp);
    if (unet_save(&m->unet, path, PARAM_BASE)) return -1;
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", tmp);
    if (text_encoder_save(&m->te, path)) return -1;
    if (training_json) {
        snprintf(path, sizeof path, "%s/selma_training.json", tmp);
        size_t n = strlen(training_json);
        char *buf = malloc(n + 2);
        CHECK(buf);
        memcpy(buf, training_json, n);
        buf[n] = '\n';
        int rc = atomic_write(path, buf, n + 1);
        free(buf);
        if (rc) return -1;
    }
    static const char *const subs[] = {"unet", "text_encoder"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, subs[i]);
        if (dir_fsync(path)) return -1;
    }
    return dir_fsync(tmp);
}
