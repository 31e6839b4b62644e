/*
 * clattn-info - lists OpenCL platforms and devices with the profile clattn
 * reads of each, and the tiles a plan would choose for a problem.
 *
 *   clattn-info [--device SEL] [--variant V --seq N --dim D ...]
 */
#include "clattn.h"
#include "toolutil.h"

#include <stdio.h>
#include <string.h>

/* The largest batch, head count, length or head dim an option takes. */
#define INFO_MAX_SIZE ((size_t)1 << 31)

static void usage(FILE *f) {
  fprintf(f,
          "usage: clattn-info [--device SEL] [--variant softmax|sigmoid|"
          "linear|cosformer]\n"
          "                   [--batch B] [--heads H] [--kv-heads H] "
          "[--seq N] [--seq-k N]\n"
          "                   [--dim D] [--dim-v D] [--causal] [--dtype "
          "f32|f16|bf16] [--tiles SPEC]\n"
          "Lists every OpenCL device with its profile; with --device, only "
          "that one.\n"
          "The tiles a plan chooses are shown for the problem given (default "
          "B=1 H=8 N=1024 D=64) for every variant.\n");
}

static const char *type_name(const clattn_device_profile *p) {
  if (p->is_gpu)
    return "GPU";
  if (p->is_cpu)
    return "CPU";
  if (p->type & CL_DEVICE_TYPE_ACCELERATOR)
    return "accelerator";
  return "other";
}

static void print_profile(const clattn_device_profile *p) {
  printf("device %u (%u:%u): %s\n", p->index, p->platform_index,
         p->device_index, p->name);
  printf("  platform        %s (%s)\n", p->platform_name, p->platform_version);
  printf("  vendor          %s (0x%x)\n", p->vendor, p->vendor_id);
  printf("  type            %s\n", type_name(p));
  printf("  version         %s; driver %s\n", p->device_version,
         p->driver_version);
  printf("  OpenCL C        %s (%d.%d)\n", p->c_version, p->c_major,
         p->c_minor);
  printf("  compute units   %u\n", p->compute_units);
  printf("  max work-group  %zu\n", p->max_work_group_size);
  printf("  local memory    %llu KiB (%s)\n",
         (unsigned long long)(p->local_mem_size / 1024),
         p->local_mem_is_real ? "real" : "emulated in global memory");
  printf("  global memory   %llu MiB; max allocation %llu MiB\n",
         (unsigned long long)(p->global_mem_size >> 20),
         (unsigned long long)(p->max_mem_alloc_size >> 20));
  printf("  float vectors   preferred %u, native %u\n",
         p->preferred_vector_width_float, p->native_vector_width_float);
  printf("  fp16            %s; subgroups %s\n", p->has_fp16 ? "yes" : "no",
         p->has_subgroups ? "yes" : "no");
  printf("  extensions      %s\n", p->extensions);
}

int main(int argc, char **argv) {
  const char *device = NULL;
  clattn_desc desc;
  clattn_desc_init(&desc, CLATTN_VARIANT_SOFTMAX);
  desc.heads_q = 8;
  desc.seq_q = desc.seq_k = 1024;
  desc.dim = 64;
  int only_variant = -1, seq_k_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    size_t *field = NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--causal")) {
      desc.causal = 1;
      continue;
    }
    if (!val) {
      fprintf(stderr, "clattn-info: %s needs a value\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--device")) {
      device = val;
    } else if (!strcmp(a, "--tiles")) {
      desc.tiles = val;
    } else if (!strcmp(a, "--variant")) {
      clattn_variant v;
      if (clattn_variant_parse(val, &v) != CLATTN_SUCCESS) {
        fprintf(stderr, "clattn-info: unknown variant %s\n", val);
        return 2;
      }
      only_variant = (int)v;
    } else if (!strcmp(a, "--dtype")) {
      if (clattn_dtype_parse(val, &desc.dtype) != CLATTN_SUCCESS) {
        fprintf(stderr, "clattn-info: unknown dtype %s\n", val);
        return 2;
      }
    } else if (!strcmp(a, "--batch")) {
      field = &desc.batch;
    } else if (!strcmp(a, "--heads")) {
      field = &desc.heads_q;
    } else if (!strcmp(a, "--kv-heads")) {
      field = &desc.heads_kv;
    } else if (!strcmp(a, "--seq")) {
      field = &desc.seq_q;
    } else if (!strcmp(a, "--seq-k")) {
      field = &desc.seq_k;
      seq_k_set = 1;
    } else if (!strcmp(a, "--dim")) {
      field = &desc.dim;
    } else if (!strcmp(a, "--dim-v")) {
      field = &desc.dim_v;
    } else {
      fprintf(stderr, "clattn-info: unknown option %s\n", a);
      return 2;
    }
    if (field && !tool_parse_size(val, INFO_MAX_SIZE, field)) {
      fprintf(stderr, "clattn-info: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  if (!seq_k_set)
    desc.seq_k = desc.seq_q;

  printf("clattn %s\n", clattn_version_string());
  cl_uint count = 0;
  clattn_device_count(&count);
  if (count == 0) {
    fprintf(stderr, "clattn-info: no OpenCL device found (is an OpenCL "
                    "driver such as PoCL installed?)\n");
    return 1;
  }
  cl_uint chosen = 0;
  clattn_status st = clattn_device_find(device, &chosen);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn-info: no device matches \"%s\"\n",
            device ? device : "(default)");
    return 1;
  }
  for (cl_uint i = 0; i < count; i++) {
    if (device && i != chosen)
      continue;
    clattn_device_profile prof;
    if (clattn_device_profile_get(i, &prof) != CLATTN_SUCCESS)
      continue;
    print_profile(&prof);
    if (i == chosen)
      printf("  (default device)\n");
  }

  char sel[32];
  snprintf(sel, sizeof sel, "%u", chosen);
  clattn_context_t ctx = NULL;
  st = clattn_context_create(&ctx, sel, 0);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn-info: %s: %s\n", clattn_status_name(st),
            clattn_context_error(ctx));
    clattn_context_destroy(ctx);
    return 1;
  }
  printf("\ntiles on device %u for B=%zu Hq=%zu Nq=%zu Nk=%zu D=%zu%s:\n",
         chosen, desc.batch, desc.heads_q, desc.seq_q, desc.seq_k, desc.dim,
         desc.causal ? " causal" : "");
  int rc = 0;
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
    if (only_variant >= 0 && v != only_variant)
      continue;
    desc.variant = (clattn_variant)v;
    clattn_plan_t plan = NULL;
    st = clattn_plan_create(ctx, &desc, &plan);
    if (st != CLATTN_SUCCESS) {
      printf("  %-10s %s: %s\n", clattn_variant_name(desc.variant),
             clattn_status_name(st), clattn_context_error(ctx));
      rc = 1;
      continue;
    }
    char line[512];
    clattn_plan_describe(plan, line, sizeof line);
    printf("  %s; workspace %zu bytes\n", line, clattn_plan_device_bytes(plan));
    clattn_plan_destroy(plan);
  }
  clattn_context_destroy(ctx);
  return rc;
}
