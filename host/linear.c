/*
 * linear.c - linear attention and cosFormer: tile choice, program build and
 * launch of cl/linear.cl and cl/cosformer.cl.
 */
#include "plan.h"

static clattn_status linear_create(clattn_plan_t plan, const char *spec) {
  (void)spec;
  return clattn__fail(plan->ctx, CLATTN_ERROR_UNSUPPORTED,
                      "%s attention is not built yet",
                      clattn_variant_name(plan->p.variant));
}

static clattn_status linear_enqueue(clattn_plan_t plan, cl_mem q, cl_mem k,
                                    cl_mem v, cl_mem o, cl_mem lse,
                                    cl_uint nwait, const cl_event *wait,
                                    cl_event *event) {
  (void)q, (void)k, (void)v, (void)o, (void)lse, (void)nwait, (void)wait,
      (void)event;
  return clattn__fail(plan->ctx, CLATTN_ERROR_UNSUPPORTED, "not built yet");
}

const clattn__family clattn__linear_family = {linear_create, linear_enqueue};
