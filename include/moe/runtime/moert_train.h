/*===- moert_train.h - Training in the moert runtime --------------*- C -*-===*
 *
 * An AdamW optimizer over the parameters of a moe_session, with global-norm
 * gradient clipping, learning-rate schedules, gradient accumulation,
 * freezing, non-finite checks and checkpoints. The optimizer lives in the
 * runtime so that any C or C++ program can train a model compiled with
 * `moec --mode=train`, whose entry point `train_step` takes the session's
 * parameters and the data inputs and returns the loss (OUTPUT), metrics
 * (METRIC) and, for each trainable parameter P, a GRADIENT result `grad.P`
 * of P's dtype and shape. A training loop is:
 *
 *   moe_session_run(session, "train_step", batch, &outputs);
 *   moe_check_finite(moe_tensor_list_find(outputs, "loss"), "loss", step);
 *   moe_optimizer_step(optimizer, outputs, &report);
 *
 * The conventions of moert.h hold here too: a `moe_status *` result is NULL
 * on success and otherwise owned by the caller; failed calls change nothing
 * (no parameter, moment, step count or accumulated gradient), and their
 * messages name the step, parameter, file or tensor at fault; optimizers
 * are reference counted like the other handles.
 *
 * Thread safety. An optimizer serialises its own calls (one step,
 * accumulation or checkpoint operation at a time) and may be shared by
 * threads. A step updates the session's parameters in place while holding
 * the session's lock exclusively, so runs of the same session from other
 * threads see the parameters either before or after a step, never halfway.
 * Getters read atomically updated counters and are safe at any time.
 *
 * See docs/runtime.md ("Training") for the formulas and the checkpoint
 * format.
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOE_RUNTIME_MOERT_TRAIN_H
#define MOE_RUNTIME_MOERT_TRAIN_H

#include "moe/runtime/moert.h"

#ifdef __cplusplus
extern "C" {
#endif

/*===----------------------- Learning-rate schedules --------------------===*/

typedef enum moe_lr_decay {
  MOE_LR_CONSTANT = 0, /* `lr` after the warmup */
  MOE_LR_COSINE = 1,   /* cosine from `lr` to `min_lr` */
  MOE_LR_LINEAR = 2    /* straight line from `lr` to `min_lr` */
} moe_lr_decay;

/* The learning rate as a function of the step index t (the number of
 * optimizer steps taken before the one it applies to: 0 for the first):
 *
 *   t < warmup_steps:   lr * (t + 1) / warmup_steps
 *   t < total_steps:    decay from lr (t = warmup_steps) towards min_lr,
 *                       p = (t - warmup_steps) / (total_steps - warmup_steps)
 *                       cosine: min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2
 *                       linear: min_lr + (lr - min_lr) * (1 - p)
 *   otherwise:          min_lr
 *
 * MOE_LR_CONSTANT is `lr` after the warmup and ignores min_lr and
 * total_steps. */
typedef struct moe_lr_schedule {
  moe_lr_decay decay;
  double lr;            /* peak rate, finite and >= 0 */
  double min_lr;        /* final rate, 0 <= min_lr <= lr */
  int64_t warmup_steps; /* >= 0 */
  int64_t total_steps;  /* decays: >= warmup_steps */
} moe_lr_schedule;

/* Checks a schedule's fields; the message names the field at fault. */
MOERT_API moe_status *moe_lr_schedule_check(const moe_lr_schedule *schedule);
/* The learning rate at step index `step` (>= 0), by the formulas above; NaN
 * for a NULL or invalid schedule or a negative step. A pure function. */
MOERT_API double moe_lr_schedule_at(const moe_lr_schedule *schedule,
                                    int64_t step);

/*===-------------------------------- AdamW -----------------------------===*/

/* AdamW's configuration. Initialise it with moe_adamw_config_init, then
 * change what differs. The optimizer copies everything, strings included,
 * when it is created.
 *
 * Name globs are fnmatch(3) patterns without flags: `*` and `?` also match
 * `.`, so "layers.0.*" covers every parameter of layer 0. */
typedef struct moe_adamw_config {
  moe_lr_schedule schedule;
  double beta1;         /* in [0, 1) */
  double beta2;         /* in [0, 1) */
  double eps;           /* > 0 */
  double weight_decay;  /* >= 0, decoupled: scaled by the learning rate */
  double max_grad_norm; /* > 0: clip the global gradient norm to it; 0: off */
  /* Parameters that get no weight decay. NULL: those of rank 0 or 1 (norm
   * weights, biases); otherwise exactly those matching one of the
   * `num_no_decay` globs (zero globs: every parameter decays). */
  const char *const *no_decay;
  int32_t num_no_decay;
  /* Parameters matching one of these globs are never updated and their
   * gradients are ignored. */
  const char *const *frozen;
  int32_t num_frozen;
} moe_adamw_config;

/* Fills `config` with the defaults: constant learning rate 1e-3 without
 * warmup (min_lr 0, total_steps 0), beta1 0.9, beta2 0.999, eps 1e-8,
 * weight_decay 0.01, no clipping, the rank rule for no_decay, nothing
 * frozen. */
MOERT_API void moe_adamw_config_init(moe_adamw_config *config);

/* How the optimizer treats a parameter. */
typedef enum moe_param_training {
  MOE_PARAM_UNKNOWN = 0,          /* the session has no such parameter */
  MOE_PARAM_FROZEN = 1,           /* matched a frozen glob, or is not f32,
                                     f16 or bf16: never updated */
  MOE_PARAM_TRAINED = 2,          /* updated, with weight decay */
  MOE_PARAM_TRAINED_NO_DECAY = 3  /* updated, without weight decay */
} moe_param_training;

/* An AdamW optimizer bound to the PARAMETER tensors of one session. It
 * keeps, for each trained parameter, f32 moments m and v (also for f16 and
 * bf16 parameters) and a shared step count. */
typedef struct moe_optimizer moe_optimizer;

/* Creates an optimizer for `session` (retained) after checking `config`
 * (its schedule, ranges, globs). Moments start at zero, the step count at
 * 0. Parameters need not have values yet. */
MOERT_API moe_status *moe_optimizer_create(moe_session *session,
                                           const moe_adamw_config *config,
                                           moe_optimizer **out);
MOERT_API void moe_optimizer_retain(moe_optimizer *optimizer);
MOERT_API void moe_optimizer_release(moe_optimizer *optimizer);

/* The session, borrowed. */
MOERT_API moe_session *moe_optimizer_get_session(const moe_optimizer *optimizer);
/* Steps taken so far (restored by moe_optimizer_load_checkpoint). */
MOERT_API int64_t moe_optimizer_step_count(const moe_optimizer *optimizer);
/* The learning rate the next step will use: the schedule at the step
 * count. */
MOERT_API double moe_optimizer_next_lr(const moe_optimizer *optimizer);
/* How parameter `name` is treated; MOE_PARAM_UNKNOWN for a NULL name. */
MOERT_API moe_param_training
moe_optimizer_param_training(const moe_optimizer *optimizer, const char *name);
/* New owned f32 copy of a moment: `name` is "optimizer.m.P" or
 * "optimizer.v.P" for a trained parameter P (the checkpoint's names). */
MOERT_API moe_status *moe_optimizer_get_state(moe_optimizer *optimizer,
                                              const char *name,
                                              moe_tensor **out);

/* What a step did. */
typedef struct moe_step_report {
  int64_t step;        /* the step just taken, counting from 1; equal to
                          moe_optimizer_step_count afterwards */
  double lr;           /* the learning rate applied */
  double grad_norm;    /* global L2 norm of the trained parameters'
                          gradients (after averaging, before clipping) */
  double clip_scale;   /* factor the gradients were scaled by: 1 unless
                          clipped */
  int32_t num_updated; /* parameters updated: trained ones with a
                          gradient */
} moe_step_report;

/* Takes one AdamW step with `gradients`, e.g. the outputs of a train_step
 * run: an entry named "grad.P" is the gradient of parameter P; entries whose
 * names do not start with "grad." (the loss, metrics) are ignored. A
 * gradient must have its parameter's dtype and shape; one naming no
 * parameter, or a parameter that cannot be trained (not f32, f16 or bf16)
 * and is not frozen, is an error naming it. Gradients of frozen parameters
 * are ignored; trained parameters without a gradient are left as they are
 * (no decay, no moment update). If a gradient of a trained parameter holds
 * a NaN or an infinity the step fails with MOE_STATUS_NON_FINITE, naming the
 * step and the first such parameter (in session order) and element, and
 * changes nothing. Fails while accumulated gradients are pending. `report`
 * may be NULL. */
MOERT_API moe_status *moe_optimizer_step(moe_optimizer *optimizer,
                                         const moe_tensor_list *gradients,
                                         moe_step_report *report);

/* Adds `gradients` (validated as by moe_optimizer_step, non-finite values
 * included) to the optimizer's f32 accumulation buffers: one call per
 * micro-batch. */
MOERT_API moe_status *moe_optimizer_accumulate(moe_optimizer *optimizer,
                                               const moe_tensor_list *gradients);
/* Micro-batches accumulated since the last step or clear. */
MOERT_API int32_t moe_optimizer_num_accumulated(const moe_optimizer *optimizer);
/* Takes one step with the accumulated sum divided by `divisor` (>= 1: 1 for
 * the sum, the number of micro-batches for their mean, a token count for a
 * per-token mean of summed losses), then clears the buffers. A parameter
 * that got a gradient in any micro-batch is updated. Fails, changing
 * nothing, when nothing is accumulated or the sum is not finite. */
MOERT_API moe_status *
moe_optimizer_step_accumulated(moe_optimizer *optimizer, int64_t divisor,
                               moe_step_report *report);
/* Drops the accumulated gradients (e.g. to skip a step). */
MOERT_API moe_status *moe_optimizer_clear_accumulated(moe_optimizer *optimizer);

/* Returns NULL if every element of a floating-point `tensor` is finite (or
 * the tensor is not floating-point), else a MOE_STATUS_NON_FINITE status
 * "step <step>: <name> is nan" (with the element index for non-scalars). For
 * the loss of a train_step run; `name` may be NULL ("tensor"). */
MOERT_API moe_status *moe_check_finite(const moe_tensor *tensor,
                                       const char *name, int64_t step);

/*===----------------------------- Checkpoints --------------------------===*/

/* An ordered map of strings, for the caller's part of a checkpoint's
 * metadata (a data position, RNG state, ...). Owned by its creator, freed
 * with moe_metadata_free; not synchronised. */
typedef struct moe_metadata moe_metadata;

MOERT_API moe_status *moe_metadata_create(moe_metadata **out);
/* NULL is a no-op. */
MOERT_API void moe_metadata_free(moe_metadata *metadata);
/* Sets `key` to `value` (both copied), replacing an earlier value. */
MOERT_API moe_status *moe_metadata_set(moe_metadata *metadata, const char *key,
                                       const char *value);
MOERT_API int32_t moe_metadata_size(const moe_metadata *metadata);
/* Key / value at `index`, owned by the map; NULL if out of range. */
MOERT_API const char *moe_metadata_key(const moe_metadata *metadata,
                                       int32_t index);
MOERT_API const char *moe_metadata_value(const moe_metadata *metadata,
                                         int32_t index);
/* Value of `key`, owned by the map; NULL if absent. */
MOERT_API const char *moe_metadata_find(const moe_metadata *metadata,
                                        const char *key);

/* Saves the session's parameters and optimizer-state tensors under their
 * names, the moments as "optimizer.m.P" / "optimizer.v.P", the step count
 * and `metadata` (may be NULL; keys "format" and "moert.*" are reserved) as
 * a safetensors file, atomically (see moe_safetensors_write). A checkpoint
 * is also a parameter file for moe_session_load_parameters. Fails if a
 * parameter has no value or accumulated gradients are pending (they are not
 * saved). Runs may proceed meanwhile. */
MOERT_API moe_status *moe_optimizer_save_checkpoint(moe_optimizer *optimizer,
                                                    const char *path,
                                                    const moe_metadata *metadata);

/* Loads a checkpoint written by moe_optimizer_save_checkpoint, all or
 * nothing: the format version, the step count, every parameter of the
 * session (dtype and shape as declared), both moments of every trained
 * parameter (f32, the parameter's shape) and optimizer-state tensors when
 * present; a tensor the session cannot place is an error. Moments of
 * parameters frozen now are ignored. Clears accumulated gradients. If
 * `metadata` is not NULL, `*metadata` receives a new map with the caller's
 * entries. Continuing from a loaded checkpoint is bit-identical to never
 * having stopped, given the same configuration and gradients. */
MOERT_API moe_status *moe_optimizer_load_checkpoint(moe_optimizer *optimizer,
                                                    const char *path,
                                                    moe_metadata **metadata);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_MOERT_TRAIN_H */
