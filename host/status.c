/*
 * status.c - names and messages of status codes, enum names, versions.
 */
#include "internal.h"

#include <string.h>

#define CLATTN_STR_(x) #x
#define CLATTN_STR(x) CLATTN_STR_(x)

CLATTN_API const char *clattn_status_name(clattn_status status) {
  switch (status) {
#define CLATTN_STATUS_NAME_(name, value, text)                                 \
  case CLATTN_##name:                                                          \
    return "CLATTN_" #name;
    CLATTN_STATUS_MAP(CLATTN_STATUS_NAME_)
#undef CLATTN_STATUS_NAME_
  }
  return "CLATTN_UNKNOWN_STATUS";
}

CLATTN_API const char *clattn_status_string(clattn_status status) {
  switch (status) {
#define CLATTN_STATUS_TEXT_(name, value, text)                                 \
  case CLATTN_##name:                                                          \
    return text;
    CLATTN_STATUS_MAP(CLATTN_STATUS_TEXT_)
#undef CLATTN_STATUS_TEXT_
  }
  return "unknown status";
}

CLATTN_API unsigned clattn_version(void) {
  return CLATTN_VERSION;
}

CLATTN_API const char *clattn_version_string(void) {
  return CLATTN_STR(CLATTN_VERSION_MAJOR) "." CLATTN_STR(
      CLATTN_VERSION_MINOR) "." CLATTN_STR(CLATTN_VERSION_PATCH);
}

static const char *const variant_names[] = {"softmax", "sigmoid", "linear",
                                            "cosformer"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const feature_map_names[] = {"default", "elu1", "relu"};

#define CLATTN_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, size_t count, int v) {
  return v >= 0 && (size_t)v < count ? names[v] : NULL;
}

static clattn_status parse_of(const char *const *names, size_t count,
                              const char *name, int *out) {
  if (!name || !out)
    return CLATTN_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; i++) {
    if (strcmp(names[i], name) == 0) {
      *out = (int)i;
      return CLATTN_SUCCESS;
    }
  }
  return CLATTN_ERROR_INVALID_VALUE;
}

CLATTN_API const char *clattn_variant_name(clattn_variant variant) {
  return name_of(variant_names, CLATTN_COUNT_OF(variant_names), (int)variant);
}

CLATTN_API const char *clattn_dtype_name(clattn_dtype dtype) {
  return name_of(dtype_names, CLATTN_COUNT_OF(dtype_names), (int)dtype);
}

CLATTN_API const char *clattn_feature_map_name(clattn_feature_map map) {
  return name_of(feature_map_names, CLATTN_COUNT_OF(feature_map_names),
                 (int)map);
}

CLATTN_API clattn_status clattn_variant_parse(const char *name,
                                              clattn_variant *out) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  int v = 0;
  clattn_status st =
      parse_of(variant_names, CLATTN_COUNT_OF(variant_names), name, &v);
  if (st == CLATTN_SUCCESS)
    *out = (clattn_variant)v;
  return st;
}

CLATTN_API clattn_status clattn_dtype_parse(const char *name,
                                            clattn_dtype *out) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  int v = 0;
  clattn_status st =
      parse_of(dtype_names, CLATTN_COUNT_OF(dtype_names), name, &v);
  if (st == CLATTN_SUCCESS)
    *out = (clattn_dtype)v;
  return st;
}

CLATTN_API clattn_status clattn_feature_map_parse(const char *name,
                                                  clattn_feature_map *out) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  int v = 0;
  clattn_status st =
      parse_of(feature_map_names, CLATTN_COUNT_OF(feature_map_names), name, &v);
  if (st == CLATTN_SUCCESS)
    *out = (clattn_feature_map)v;
  return st;
}
