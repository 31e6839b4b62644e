/*
 * hello.c - the smallest complete use of clattn: causal softmax attention on
 * the default device through the host-pointer call, checked against a plain
 * CPU computation.
 */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { B = 1, H = 4, N = 100, D = 40 };

int main(void) {
  static float q[B * H * N * D], k[B * H * N * D], v[B * H * N * D],
      o[B * H * N * D];
  srand(1);
  for (int i = 0; i < B * H * N * D; i++) {
    q[i] = (float)rand() / RAND_MAX - 0.5f;
    k[i] = (float)rand() / RAND_MAX - 0.5f;
    v[i] = (float)rand() / RAND_MAX - 0.5f;
  }

  clattn_context_t ctx = NULL;
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_context_create(&ctx, NULL, 0); /* CLATTN_DEVICE */
  if (st == CLATTN_SUCCESS) {
    clattn_desc desc;
    clattn_desc_init(&desc, CLATTN_VARIANT_SOFTMAX);
    desc.batch = B;
    desc.heads_q = H;
    desc.seq_q = desc.seq_k = N;
    desc.dim = D;
    desc.causal = 1;
    st = clattn_plan_create(ctx, &desc, &plan);
  }
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, q, k, v, o, NULL);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "hello: %s: %s\n", clattn_status_name(st),
            clattn_context_error(ctx));
    clattn_plan_destroy(plan);
    clattn_context_destroy(ctx);
    return 1;
  }
  clattn_device_profile prof;
  clattn_context_profile(ctx, &prof);
  clattn_plan_destroy(plan);
  clattn_context_destroy(ctx);

  /* The same attention in double precision, row by row. */
  double worst = 0;
  for (int h = 0; h < B * H; h++) {
    for (int i = 0; i < N; i++) {
      double s[N], mx = -INFINITY, sum = 0;
      for (int j = 0; j <= i; j++) {
        double dot = 0;
        for (int c = 0; c < D; c++)
          dot += (double)q[(h * N + i) * D + c] * k[(h * N + j) * D + c];
        s[j] = dot / sqrt(D);
        mx = fmax(mx, s[j]);
      }
      for (int j = 0; j <= i; j++)
        sum += s[j] = exp(s[j] - mx);
      for (int c = 0; c < D; c++) {
        double ref = 0;
        for (int j = 0; j <= i; j++)
          ref += s[j] / sum * v[(h * N + j) * D + c];
        worst = fmax(worst, fabs(ref - o[(h * N + i) * D + c]));
      }
    }
  }
  printf("causal softmax attention B=%d H=%d N=%d D=%d on %s: max abs error "
         "%.2g\n",
         B, H, N, D, prof.name, worst);
  return worst < 1e-5 ? 0 : 1;
}
