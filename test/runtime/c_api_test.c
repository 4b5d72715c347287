/*===- c_api_test.c - The C API used from C -------------------------------===*
 *
 * Compiled as C99 with -pedantic: moert.h, moert_data.h and moert_train.h
 * must be valid C. Loads the linear fixture (argv[1]), runs it and checks a
 * result against a hand computation; tokenizes and decodes a text with the
 * byte tokenizer; takes one AdamW step.
 *
 *===----------------------------------------------------------------------===*/
#include "moe/runtime/moert.h"
#include "moe/runtime/moert_data.h"
#include "moe/runtime/moert_train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check(moe_status *status, const char *what) {
  if (!status)
    return 1;
  fprintf(stderr, "%s: %s: %s\n", what,
          moe_status_code_name(moe_status_get_code(status)),
          moe_status_get_message(status));
  moe_status_free(status);
  return 0;
}

int main(int argc, char **argv) {
  moe_model *model = NULL;
  moe_session *session = NULL;
  moe_tensor *x = NULL, *w = NULL, *ids = NULL, *updated = NULL;
  moe_tokenizer *bytes = NULL;
  char *text = NULL;
  moe_tensor_list *inputs = NULL, *outputs = NULL, *gradients = NULL;
  moe_optimizer *optimizer = NULL;
  moe_adamw_config config;
  moe_step_report report;
  moe_status *missing;
  const float *y, *ws;
  const float xs[2][4] = {{0.5f, -1.25f, 2.0f, 0.75f},
                          {-0.3f, 0.9f, 1.1f, -2.2f}};
  const int64_t x_shape[2] = {2, 4};
  int i, j, k, ok = 1;

  if (argc != 2) {
    fprintf(stderr, "usage: %s linear.so\n", argv[0]);
    return 2;
  }
  missing = moe_model_load("/nonexistent.so", &model);
  if (moe_status_get_code(missing) != MOE_STATUS_NOT_FOUND || model) {
    fprintf(stderr, "a missing model must give MOE_STATUS_NOT_FOUND\n");
    return 1;
  }
  moe_status_free(missing);

  ok = ok && check(moe_model_load(argv[1], &model), "load");
  ok = ok && check(moe_session_create(model, 2, &session), "session");
  ok = ok && check(moe_session_init_parameters(session, 42), "init");
  ok = ok &&
       check(moe_tensor_create_copy(MOE_F32, 2, x_shape, xs, sizeof(xs), &x),
             "input");
  ok = ok && check(moe_tensor_list_create(&inputs), "list");
  ok = ok && check(moe_tensor_list_add(inputs, "x", x), "add");
  ok =
      ok && check(moe_session_run(session, "forward", inputs, &outputs), "run");
  ok = ok && check(moe_session_get_parameter(session, "w", &w), "get");
  if (ok) {
    y = moe_tensor_data(moe_tensor_list_find(outputs, "y"));
    ws = moe_tensor_data(w);
    /* y = x @ w: the initial bias is zero and the norm weight one. */
    for (i = 0; i < 2; ++i)
      for (j = 0; j < 4; ++j) {
        float expected = 0;
        for (k = 0; k < 4; ++k)
          expected += xs[i][k] * ws[k * 4 + j];
        if (fabsf(y[i * 4 + j] - expected) > 1e-6f) {
          fprintf(stderr, "y[%d][%d] = %g, expected %g\n", i, j, y[i * 4 + j],
                  expected);
          ok = 0;
        }
      }
  }

  ok = ok && check(moe_tokenizer_create_byte(&bytes), "tokenizer");
  ok = ok && check(moe_tokenizer_encode(bytes, "hi", &ids), "encode");
  ok = ok && check(moe_tokenizer_decode(bytes, moe_tensor_data(ids),
                                        moe_tensor_num_elements(ids), &text),
                   "decode");
  if (ok && (strcmp(text, "hi") != 0 ||
             moe_tokenizer_eos_id(bytes) != MOE_BYTE_EOS_ID)) {
    fprintf(stderr, "byte tokenizer round trip gave '%s'\n", text);
    ok = 0;
  }
  moe_string_free(text);
  moe_tensor_release(ids);
  moe_tokenizer_release(bytes);

  /* One AdamW step with the gradient w: the first step moves each weight
   * by lr against the sign of its gradient, after decoupled decay. */
  moe_adamw_config_init(&config);
  ok = ok &&
       check(moe_optimizer_create(session, &config, &optimizer), "optimizer");
  ok = ok && check(moe_tensor_list_create(&gradients), "gradients");
  ok = ok && check(moe_tensor_list_add(gradients, "grad.w", w), "add grad");
  ok = ok && check(moe_optimizer_step(optimizer, gradients, &report), "step");
  ok = ok && check(moe_session_get_parameter(session, "w", &updated), "get");
  if (ok) {
    const float *after = moe_tensor_data(updated);
    for (i = 0; i < 16; ++i) {
      double lr = config.schedule.lr;
      double expected =
          ws[i] * (1 - lr * config.weight_decay) - (ws[i] > 0 ? lr : -lr);
      if (fabs(after[i] - expected) > 1e-6) {
        fprintf(stderr, "w[%d] = %g after one step, expected %g\n", i, after[i],
                expected);
        ok = 0;
      }
    }
    if (report.step != 1 || moe_optimizer_step_count(optimizer) != 1) {
      fprintf(stderr, "the step count is not 1\n");
      ok = 0;
    }
  }
  moe_optimizer_release(optimizer);
  moe_tensor_list_release(gradients);
  moe_tensor_release(updated);
  moe_tensor_list_release(outputs);
  moe_tensor_list_release(inputs);
  moe_tensor_release(x);
  moe_tensor_release(w);
  moe_session_release(session);
  moe_model_release(model);
  if (ok)
    printf("C API test passed\n");
  return ok ? 0 : 1;
}
