//===- Passes.td - moec passes -----------------------------------*- tablegen -*-===//
//
// Every pass of the project is declared here with a summary, a description
// and an example; one .cpp per pass implements it and one lit test per pass
// (test/passes/<pass-name>.mlir) checks it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_PASSES
#define MOEC_PASSES

include "mlir/Pass/PassBase.td"

def MoEDecomposeLayer : Pass<"moe-decompose-layer"> {
  let summary = "rewrite moe.layer into routing, dispatch, expert and combine ops";
  let description = [{
    Frontends emit one coarse `moe.layer` per MoE FFN. This pass rewrites
    each into the fine-grained ops that the later phases fuse and lower:
    `moe.gate`, then `moe.token_choice` + `moe.dispatch` (or
    `moe.expert_choice`), `moe.permute`, `moe.expert_ffn`, an optional
    `moe.shared_expert` whose output seeds the accumulator, `moe.combine`,
    and the metrics `moe.load_balancing_loss`, `moe.z_loss` and
    `moe.routing_stats`. Results of the layer are replaced one for one, so
    unused metrics disappear with dead-code elimination.

    Example: the Mixtral layer

    ```mlir
    %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
        router %wg : tensor<64x8xf32>
        experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
        fc3 %w3 : tensor<8x64x128xf32> {k = 2 : i64, normalize}
    ```

    becomes

    ```mlir
    %logits = moe.gate %x, %wg : tensor<?x64xf32>, tensor<64x8xf32>
    %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
        : tensor<?x8xf32>
    %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
        : tensor<?x2xi32>, tensor<?x2xf32>
    %xs = moe.permute %x, %rt : tensor<?x64xf32>, tensor<?xi32>
    %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : ...
    %zero = ... zeros of tensor<?x64xf32> ...
    %y = moe.combine %ys, %rt, %rw into %zero : ...
    %aux = moe.load_balancing_loss %p, %idx : ...
    %z = moe.z_loss %logits : tensor<?x8xf32>
    %load, %drop = moe.routing_stats %off indices %idx : ...
    ```
  }];
  let dependentDialects = [
    "::moec::moe::MoEDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def MoERaiseDecomposed : Pass<"moe-raise-decomposed"> {
  let summary = "recognise MoE FFNs spelled out in nn ops and rewrite them into moe ops";
  let description = [{
    ONNX exporters without an MoE op emit a token-choice MoE FFN as plain
    ops, which the importer maps one to one onto `nn` ops: a router
    `nn.linear` + `nn.softmax` + `nn.topk` (optionally renormalised by
    `nn.div` with `nn.reduce_sum`), then per expert `e` a routing weight
    `s_e` (the top-k weights where the indices equal `e`, masked with
    `nn.compare eq` and `nn.where` or `nn.cast` + `nn.mul`, summed with
    `nn.reduce_sum {keep_dims}`), a dense FFN over every token (`nn.linear`,
    an activation — relu, gelu, tanh gelu, silu, silu spelled as
    `h * sigmoid(h)`, or the gated swiglu/geglu with a third linear —,
    `nn.linear`) and the product `s_e * y_e`; the output is an `nn.add` tree
    over the experts' terms (in any association, optionally starting from a
    constant zero).

    The pass replaces the output by `moe.gate` (the router linear),
    `moe.token_choice softmax` (`normalize` when renormalised), a dropless
    `moe.dispatch`, `moe.permute`, one `moe.expert_ffn` whose weights and
    biases are the experts' ones stacked by `nn.concat` into `[E, ...]`
    tensors, and `moe.combine` into zeros, as `moe-decompose-layer` does;
    each expert then runs on its own tokens only. Inputs `[..., D]` of rank
    above 2 are reshaped to `[T, D]` and the output back.

    A structure is rewritten only when it is the whole MoE FFN: every expert
    `0 .. E-1` (E = the router's output width) exactly once, all reading the
    same top-k, the same input (the router's) with the same activation and
    weight shapes, the top-k of the largest values along the last axis of a
    softmax over the last axis, f32 routing (probabilities rounded to
    f16/bf16 may tie where the f32 ones of `moe.token_choice` do not). Both
    top-ks break ties towards the lower expert index. Anything else is left
    as it is; the rewrite changes results only by the summation order of
    the expert outputs (and where an unselected expert's output is not
    finite, which the dense form turns into NaN).

    Example (E = 2, k = 1, relu):

    ```mlir
    %logits = nn.linear %x, %wr : tensor<?x16xf32>, tensor<16x2xf32>
    %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
    %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
    %zero = arith.constant dense<0.0> : tensor<f32>
    %c0 = arith.constant dense<0> : tensor<i64>
    %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
    %w0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
    %s0 = nn.reduce_sum %w0 [1] {keep_dims} : tensor<?x1xf32>
    %h0 = nn.linear %x, %w1_0 : tensor<?x16xf32>, tensor<16x32xf32>
    %a0 = nn.relu %h0 : tensor<?x32xf32>
    %y0 = nn.linear %a0, %w2_0 : tensor<?x32xf32>, tensor<32x16xf32>
    %t0 = nn.mul %s0, %y0 : tensor<?x1xf32>, tensor<?x16xf32>
    // ... the same for expert 1 ...
    %out = nn.add %t0, %t1 : tensor<?x16xf32>, tensor<?x16xf32>
    ```

    becomes

    ```mlir
    %logits = moe.gate %x, %wr : tensor<?x16xf32>, tensor<16x2xf32>
    %w, %idx, %p = moe.token_choice softmax %logits top 1 : tensor<?x2xf32>
    %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 2 : i64}
        : tensor<?x1xi32>, tensor<?x1xf32>
    %xs = moe.permute %x, %rt : tensor<?x16xf32>, tensor<?xi32>
    %r0 = nn.reshape %w1_0 : tensor<16x32xf32> -> tensor<1x16x32xf32>
    %r1 = nn.reshape %w1_1 : tensor<16x32xf32> -> tensor<1x16x32xf32>
    %fc1 = nn.concat %r0, %r1 axis = 0 : tensor<1x16x32xf32>, tensor<1x16x32xf32>
    // ... %fc2 likewise from %w2_0 and %w2_1 ...
    %ys = moe.expert_ffn relu %xs, %off, %fc1, %fc2
        : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x32xf32>, tensor<2x32x16xf32>
    %zeros = ... zeros of tensor<?x16xf32> ...
    %out = moe.combine %ys, %rt, %rw into %zeros
        : tensor<?x16xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
    ```
  }];
  let dependentDialects = [
    "::moec::moe::MoEDialect",
    "::moec::nn::NNDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def MoESpecializeRouting : Pass<"moe-specialize-routing"> {
  let summary = "keep the training or the evaluation routing configuration";
  let description = [{
    Switch Transformer and GShard route differently in training and in
    evaluation: multiplicative router jitter is a training regulariser, and
    evaluation uses its own (usually larger) capacity factor. `moe.gate` and
    `moe.layer` carry the jitter (`seed`, `jitter_eps`); `moe.dispatch`,
    `moe.expert_choice` and `moe.layer` may carry an
    `eval_capacity_factor` next to `capacity_factor`. This pass keeps one
    configuration:

    - `mode=eval` removes the jitter (the `seed` operand and `jitter_eps`)
      from gates and layers and makes `eval_capacity_factor`, where given,
      the `capacity_factor`. A new capacity changes the row count of a
      static row plan: the result types of the routing op and of the ops
      using its plan are inferred again.
    - `mode=train` keeps the jitter and drops `eval_capacity_factor`.

    Functions marked `moe.training` (the `train_step` that `moe-autodiff`
    builds) always get the training configuration. It runs before or after
    `moe-decompose-layer`.

    Example (`mode=eval`):

    ```mlir
    %l = moe.gate %x, %w seed %s {jitter_eps = 0.01 : f32}
        : tensor<?x64xf32>, tensor<64x8xf32>
    %rt, %rw, %off = moe.dispatch %idx, %wts {num_experts = 8 : i64,
        capacity_factor = 1.0 : f64, eval_capacity_factor = 2.0 : f64}
        : tensor<?x1xi32>, tensor<?x1xf32>
    ```

    becomes

    ```mlir
    %l = moe.gate %x, %w : tensor<?x64xf32>, tensor<64x8xf32>
    %rt, %rw, %off = moe.dispatch %idx, %wts {num_experts = 8 : i64,
        capacity_factor = 2.0 : f64} : tensor<?x1xi32>, tensor<?x1xf32>
    ```
  }];
  let options = [
    Option<"mode", "mode", "std::string", /*default=*/"\"train\"",
           "the routing to keep: 'train' (jitter, training capacity) or "
           "'eval' (no jitter, eval_capacity_factor)">
  ];
  let dependentDialects = ["::moec::moe::MoEDialect"];
}

def MoEAutodiff : Pass<"moe-autodiff", "::mlir::ModuleOp"> {
  let summary = "reverse-mode differentiation of @forward into @train_step";
  let description = [{
    Clones the entry function (`entry`, default `@forward`) into
    `@train_step` and appends its backward pass. The objective is the 0-d
    result named `loss` (`moe.name`), plus `aux_loss_coef * aux_loss` and
    `z_loss_coef * z_loss` when the function returns results with those
    names; each coefficient becomes a 0-d input of `train_step` whose
    `moe.default` is the pass option's value, so a runtime may use or
    override it.

    Every argument with `moe.role = "parameter"` is trainable unless
    `freeze` names it: an entry of `freeze` is a parameter group or a glob
    over parameter names. Groups come from how the function uses each
    parameter and are recorded as `moe.groups` on the arguments: `router`
    (moe.gate, the selection bias), `experts` (moe.expert_ffn),
    `shared_experts`, `attention` (linears feeding `nn.attention` or reading
    its result), `norms`, `embeddings` and `head` (the linear producing the
    cross-entropy logits). Values that depend on no trainable parameter get
    no gradient, so frozen parameters cost no backward work beyond what
    upstream parameters need.

    The backward pass walks the function in reverse and asks each op for its
    vector-Jacobian product (`DifferentiableOpInterface`), summing the
    gradients of values with several uses. `train_step` returns the
    objective (`loss`), the task loss as `task_loss` when router losses were
    added, the forward's scalar outputs and its metrics, and `grad.<name>`
    (role `gradient`) for every trainable parameter the objective depends
    on. Per-token outputs such as logits are not returned. The function is
    marked `moe.training`, which `moe-specialize-routing` reads.

    Example: for

    ```mlir
    func.func @forward(%x: tensor<4x8xf32> {moe.name = "x"},
                       %w: tensor<8x3xf32> {moe.name = "w", moe.role = "parameter"},
                       %t: tensor<4xi32> {moe.name = "t"})
        -> (tensor<f32> {moe.name = "loss"}) {
      %logits = nn.linear %x, %w : tensor<4x8xf32>, tensor<8x3xf32>
      %loss = nn.cross_entropy %logits, %t : tensor<4x3xf32>, tensor<4xi32>
      return %loss : tensor<f32>
    }
    ```

    the pass adds `@train_step(%x, %w, %t) -> (loss, grad.w)`.
  }];
  let options = [
    Option<"entry", "entry", "std::string", "\"forward\"",
           "the function to differentiate">,
    Option<"lossName", "loss", "std::string", "\"loss\"",
           "the moe.name of the task loss result">,
    Option<"auxLossCoef", "aux-loss-coef", "double", "0.01",
           "default weight of the load-balancing loss (result 'aux_loss')">,
    Option<"zLossCoef", "z-loss-coef", "double", "0.001",
           "default weight of the router z-loss (result 'z_loss')">,
    ListOption<"freeze", "freeze", "std::string",
               "parameter groups or name globs that are not trained">
  ];
  let dependentDialects = [
    "::moec::nn::NNDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def ConvertNNToLinalg : Pass<"convert-nn-to-linalg", "::mlir::func::FuncOp"> {
  let summary = "lower nn ops to linalg, tensor, arith and math on tensors";
  let description = [{
    Rewrites every `nn` op into upstream ops on tensors: `linalg.generic`
    and named linalg ops (matmul, transpose, fill, reductions),
    `tensor.collapse_shape` / `expand_shape` / `empty`, `arith` and `math`.
    Elementwise ops become `linalg.generic` with broadcasting indexing maps;
    normalisations, softmax and cross-entropy become reductions followed by
    elementwise generics; attention becomes two contractions around a masked
    softmax; `f16`/`bf16` operands compute in `f32` inside the generics.
    After the pass no `nn` op remains; an op it cannot lower (for example
    attention with dynamic head counts) is reported as an error.

    Example:

    ```mlir
    %y = nn.relu %x : tensor<?x64xf32>
    ```

    becomes

    ```mlir
    %empty = tensor.empty(%d0) : tensor<?x64xf32>
    %y = linalg.generic {indexing_maps = [#id, #id],
                         iterator_types = ["parallel", "parallel"]}
        ins(%x : tensor<?x64xf32>) outs(%empty : tensor<?x64xf32>) {
    ^bb0(%in: f32, %out: f32):
      %zero = arith.constant 0.0 : f32
      %r = arith.maximumf %in, %zero : f32
      linalg.yield %r : f32
    } -> tensor<?x64xf32>
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def ConvertMoEToLinalg : Pass<"convert-moe-to-linalg", "::mlir::ModuleOp"> {
  let summary = "lower moe ops to linalg, tensor, scf, arith and math";
  let description = [{
    Rewrites every fine-grained `moe` op (run `moe-decompose-layer` first)
    into upstream ops. The dense parts stay on tensors so that later phases
    tile and vectorise them: `moe.gate` is a matmul (plus a counter-based
    uniform jitter), `moe.expert_ffn` is a loop over experts whose body is a
    pair of matmuls on the expert's row segment, `moe.permute` is a gather.
    The control-heavy parts (top-k selection, capacity-limited dispatch with
    priority, combine's scatter-add, counters) become `scf` loops.

    Example:

    ```mlir
    %xs = moe.permute %x, %rt : tensor<?x64xf32>, tensor<?xi32>
    ```

    becomes a `linalg.generic` over `[R, D]` whose body reads
    `tensor.extract %x[%token, %d]` (or yields 0 when `%token` is -1).

    With `expert-rows` (the CUDA pipeline), `moe.expert_ffn` is instead one
    grouped product per matmul over all rows, each row reading its own
    expert's weights (found from the offsets): no loop over experts and no
    slice whose size depends on the routing, which a GPU host could only
    know by waiting for the device. With `device-kernels`, a
    `moe.token_choice` (softmax or sigmoid, one group, at most 256 experts)
    and the dropless `moe.dispatch` of its indices and weights become one
    launch of a fused routing kernel (docs/compiler.md, "CUDA code").
    The products of bf16 and f16 expert FFNs are launches of a hand-built
    grouped GEMM kernel on the tensor cores (`mma.sync` m16n8k16, f32
    accumulation; see docs/compiler.md), and `moe.combine` is a kernel with
    one thread per feature column.
  }];
  let options = [
    Option<"expertRows", "expert-rows", "bool", /*default=*/"false",
           "Lower moe.expert_ffn to grouped products over rows instead of "
           "a loop over experts (GPU targets)">,
    Option<"deviceKernels", "device-kernels", "bool", /*default=*/"false",
           "Lower the ops that have one to hand-built CUDA kernels "
           "(gpu.func in @moe_kernels, launched through declarations that "
           "moe-gpu-map-to-kernels turns into gpu.launch_func)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::NVVM::NVVMDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def MoECPUTileAndVectorize
    : Pass<"moe-cpu-tile-and-vectorize", "::mlir::ModuleOp"> {
  let summary = "register-blocked, vectorised, parallel schedule for matmuls";
  let description = [{
    Applies a transform-dialect schedule to every `linalg.matmul` on
    tensors: an `scf.forall` over blocks of 96 rows (the unit of parallel
    work), 128-column panels, 6-row micro tiles peeled so that full tiles
    need no masks, 16-column vectors and a K loop of single steps whose
    accumulator `loop-invariant-subset-hoisting` then keeps in registers. Edge
    tiles of dynamic extents are vectorised with masks. Other linalg ops are
    left to the loop lowering and LLVM's vectoriser.

    Example: `linalg.matmul ins(%a, %b : tensor<?x512xf32>, tensor<512x512xf32>)`
    becomes `scf.forall` / `scf.for` nests around
    `vector.transfer_read ... : tensor<?x512xf32>, vector<6x16x1xf32>` and
    `arith.mulf` / `arith.addf` on `vector<6x16xf32>`.
  }];
  let dependentDialects = [
    "::mlir::affine::AffineDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::transform::TransformDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def MoELowerStridedCopies
    : Pass<"moe-lower-strided-copies", "::mlir::func::FuncOp"> {
  let summary = "turn memref.copy between strided views into linalg.copy";
  let description = [{
    After bufferization, copies into or out of strided views (a slice of the
    buffer that a concatenation fills, a strided slice) are `memref.copy`
    ops whose LLVM lowering calls `memrefCopy` from MLIR's C runner
    utilities, which a `model.so` does not link. This pass rewrites every
    `memref.copy` with a non-identity layout on either side into a
    `linalg.copy`, which `convert-linalg-to-loops` lowers to loops; copies
    between identity layouts stay `memref.copy` (they become `memcpy`).

    Example:

    ```mlir
    memref.copy %a, %view : memref<?x3xf32> to memref<?x3xf32, strided<[9, 1]>>
    ```

    becomes

    ```mlir
    linalg.copy ins(%a : memref<?x3xf32>)
                outs(%view : memref<?x3xf32, strided<[9, 1]>>)
    ```
  }];
  let options = [
    Option<"allCopies", "all-copies", "bool", /*default=*/"false",
           "Rewrite copies between identity layouts too (targets whose "
           "host code cannot touch the memory, such as CUDA)">
  ];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def MoEGPUMapToKernels : Pass<"moe-gpu-map-to-kernels", "::mlir::ModuleOp"> {
  let summary = "split host code and gpu.launch kernels for the CUDA target";
  let description = [{
    On the CUDA target tensors live in device memory, so host code may only
    allocate, compute shapes and launch kernels. This pass runs after
    bufferization, once linalg ops are loops:

    - every outermost `scf.parallel` becomes a `gpu.launch` over a 1-d grid
      of 256-thread blocks, one iteration per thread (the innermost loop
      dimension varies fastest, so neighbouring threads touch neighbouring
      elements), with a bounds check;
    - other ops that read or write memory (scalar stores, sequential loops
      such as histograms and prefix sums) become single-thread kernels,
      together with the scalar ops that consume their results, up to the
      next parallel loop or deallocation;
    - `scf.for` and `scf.if` without results whose bodies contain parallel
      loops, and read memory only inside them, stay on the host and launch
      kernels from their bodies (the others run on one thread);
    - every `memref.get_global` becomes a device buffer filled through
      `@__moe_cuda_upload(dst, src, bytes)` (defined by the model emitter
      over the runtime's `cuda_copy`) and freed before returning unless it
      is returned.

    Every launch names its kernel `@moe_kernels::@<function>_kernel_<n>`,
    so `gpu-kernel-outlining` puts all kernels in one `gpu.module` and the
    model carries one device blob. Host code that needs a value computed
    on the device (a data-dependent shape or loop bound) is reported as
    unsupported.

    Example:

    ```mlir
    scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c64) step (%c1, %c1) {
      %v = memref.load %a[%i, %j] : memref<?x64xf32>
      memref.store %v, %b[%i, %j] : memref<?x64xf32>
    }
    ```

    becomes (constants folded)

    ```mlir
    %total = arith.muli %n, %c64 : index
    %blocks = arith.ceildivsi %total, %c256 : index
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %blocks, ...)
               threads(%tx, %ty, %tz) in (%sx = %c256, ...)
               module(@moe_kernels) function(@f_kernel_0) {
      %linear = %bx * 256 + %tx
      scf.if %linear < %total {
        %j = %linear mod 64
        %i = %linear / 64
        %v = memref.load %a[%i, %j] : memref<?x64xf32>
        memref.store %v, %b[%i, %j] : memref<?x64xf32>
      }
      gpu.terminator
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

def MoEOutlineParallelLoops
    : Pass<"moe-outline-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "run scf.parallel loops on the runtime's threads";
  let description = [{
    Outlines the body of every outermost one-dimensional `scf.parallel`
    (after bufferization) into `@__moe_par_body_N(%begin, %end, %lb, %step,
    %captures...)` and replaces the loop by a call to the declaration
    `@__moe_par_dispatch_N(%iterations, %lb, %step, %captures...)`. The model
    emitter defines the dispatch function in LLVM IR: it packs its arguments
    into a closure and calls the runtime's `parallel_for` service, whose
    workers run chunks of iterations through the body. Constants are cloned
    into the body instead of being captured.

    Example:

    ```mlir
    scf.parallel (%i) = (%c0) to (%n) step (%c96) {
      "use"(%i, %buffer) : (index, memref<?x512xf32>) -> ()
    }
    ```

    becomes

    ```mlir
    %count = arith.ceildivsi (%n - %c0), %c96
    func.call @__moe_par_dispatch_0(%count, %c0, %c96, %buffer)
    func.func private @__moe_par_body_0(%begin: index, %end: index,
        %lb: index, %step: index, %buffer: memref<?x512xf32>) {
      scf.for %j = %begin to %end step %c1 {
        %i = %lb + %j * %step
        "use"(%i, %buffer) : (index, memref<?x512xf32>) -> ()
      }
    }
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect"
  ];
}

#endif // MOEC_PASSES
