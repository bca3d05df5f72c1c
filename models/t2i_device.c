// A text-to-image model's UNet on another device (bundle.h): rebuilt there in the same
// mode and its weights copied over; the text encoder and the VAE stay on the host.
#include <string.h>

#include "models/bundle.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"

int t2i_device_parse(const char *name, const char *what, device_kind *dev) {
    if (!strcmp(name, "cpu")) {
        *dev = DEVICE_CPU;
        return 0;
    }
    if (strcmp(name, "cuda")) return err_set("%s: unknown device '%s' (cpu or cuda)", what, name);
    if (cuda_device_count() == 0)
        return err_set("%s: cuda: no usable CUDA device here (%s); use cpu", what, cuda_device_describe());
    *dev = DEVICE_CUDA;
    return 0;
}

int t2i_unet_to_device(t2i_model *m, device_kind dev) {
    if (m->unet.params.params.device == dev) return 0;
    if (m->unet.moe)
        return err_set("model: a LoRA mixture of experts runs on the CPU only (kernels/moe_lora.h has no CUDA version)");
    // The current UNet moves out of the model as a value (its grad_slot pointers, used
    // only while it was being built, are never followed again), and the new one is built
    // in place.
    unet src = m->unet;
    lora_config l = src.params.lora;
    if (unet_build_device(&m->unet, &src.cfg, src.mode, l.rank > 0 ? &l : NULL, dev)) {
        m->unet = src;
        return -1;
    }
    if (unet_copy_params(&m->unet, &src)) {
        unet_free(&m->unet);
        m->unet = src;
        return -1;
    }
    unet_free(&src);
    // Sampling activations belonged to the old UNet; the next t2i_sample lays out new ones.
    float *rows[] = {m->dev_x, m->dev_ctx, m->dev_pooled};
    for (int i = 0; i < 3; i++)
        if (rows[i]) device_free(DEVICE_CUDA, rows[i]);
    m->dev_x = m->dev_ctx = m->dev_pooled = NULL;
    m->acts_B = 0;
    log_line("model: UNet on %s", dev == DEVICE_CUDA ? cuda_device_describe() : "the CPU");
    return 0;
}
