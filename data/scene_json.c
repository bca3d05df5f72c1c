// The JSON form of a scene (keys documented in render.h).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/render.h"
#include "runtime/error.h"

int scene_to_json(const scene *s, char **out) {
    *out = NULL;
    if (s->n_objects < 0 || s->n_objects > MAX_OBJECTS || s->background < 0 ||
        s->background >= COLOR_COUNT)
        return err_set("scene_to_json: bad scene (%d objects, background %d)", s->n_objects,
                       s->background);
    cJSON *root = cJSON_CreateObject();
    CHECK(root);
    cJSON_AddNumberToObject(root, "width", s->width);
    cJSON_AddNumberToObject(root, "height", s->height);
    cJSON_AddStringToObject(root, "background", color_names[s->background]);
    cJSON *arr = cJSON_AddArrayToObject(root, "objects");
    for (int i = 0; i < s->n_objects; i++) {
        const object *o = &s->objects[i];
        if (o->shape < 0 || o->shape >= SHAPE_COUNT || o->color < 0 || o->color >= COLOR_COUNT ||
            o->size < 0 || o->size >= SIZE_COUNT || o->fill < 0 || o->fill >= FILL_COUNT) {
            cJSON_Delete(root);
            return err_set("scene_to_json: object %d has an attribute out of range", i);
        }
        cJSON *j = cJSON_CreateObject();
        CHECK(j);
        cJSON_AddStringToObject(j, "shape", shape_names[o->shape]);
        cJSON_AddStringToObject(j, "color", color_names[o->color]);
        cJSON_AddStringToObject(j, "size", size_names[o->size]);
        cJSON_AddStringToObject(j, "fill", fill_names[o->fill]);
        // floats print exactly as doubles (cJSON writes 17 digits when needed)
        cJSON_AddNumberToObject(j, "cx", o->cx);
        cJSON_AddNumberToObject(j, "cy", o->cy);
        cJSON_AddNumberToObject(j, "radius", o->radius);
        cJSON_AddNumberToObject(j, "entity", o->entity);
        cJSON_AddItemToArray(arr, j);
    }
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK(*out);
    return 0;
}

static int name_index(const cJSON *obj, const char *key, const char *const *names, int n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(v->valuestring, names[i])) return i;
    return -1;
}

static int number_get(const cJSON *obj, const char *key, double *x) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *x = v->valuedouble;
    return 0;
}

static int scene_parse(const cJSON *root, scene *out) {
    double w, h;
    if (!cJSON_IsObject(root)) return err_set("scene JSON: not an object");
    if (number_get(root, "width", &w) || number_get(root, "height", &h) || w < 1 || h < 1 ||
        w > 1 << 16 || h > 1 << 16 || w != floor(w) || h != floor(h))
        return err_set("scene JSON: \"width\"/\"height\" missing or not positive integers");
    out->width = (int)w, out->height = (int)h;
    out->background = name_index(root, "background", color_names, COLOR_COUNT);
    if (out->background < 0) return err_set("scene JSON: \"background\" missing or unknown");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "objects");
    if (!cJSON_IsArray(arr)) return err_set("scene JSON: \"objects\" missing or not an array");
    int n = cJSON_GetArraySize(arr);
    if (n > MAX_OBJECTS) return err_set("scene JSON: %d objects, at most %d", n, MAX_OBJECTS);
    for (int i = 0; i < n; i++) {
        const cJSON *j = cJSON_GetArrayItem(arr, i);
        object *o = &out->objects[i];
        double cx, cy, r, ent;
        o->shape = name_index(j, "shape", shape_names, SHAPE_COUNT);
        o->color = name_index(j, "color", color_names, COLOR_OBJECT_COUNT);
        o->size = name_index(j, "size", size_names, SIZE_COUNT);
        o->fill = name_index(j, "fill", fill_names, FILL_COUNT);
        if (o->shape < 0 || o->color < 0 || o->size < 0 || o->fill < 0)
            return err_set("scene JSON: object %d: shape, color, size or fill missing or unknown", i);
        if (number_get(j, "cx", &cx) || number_get(j, "cy", &cy) || number_get(j, "radius", &r) ||
            number_get(j, "entity", &ent))
            return err_set("scene JSON: object %d: cx, cy, radius or entity missing", i);
        if (r <= 0 || cx < 0 || cx > w || cy < 0 || cy > h || ent < -1 || ent >= MAX_ENTITIES ||
            ent != floor(ent))
            return err_set("scene JSON: object %d: position, radius or entity out of range", i);
        o->cx = (float)cx, o->cy = (float)cy, o->radius = (float)r, o->entity = (int)ent;
    }
    out->n_objects = n;
    return 0;
}

int scene_from_json(const char *text, scene *out) {
    memset(out, 0, sizeof *out);
    if (!text) return err_set("scene JSON: no text");
    cJSON *root = cJSON_Parse(text);
    if (!root) return err_set("scene JSON: parse error near \"%.20s\"",
                              cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    int rc = scene_parse(root, out);
    cJSON_Delete(root);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}
