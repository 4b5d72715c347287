// RUN: moec %s --emit=llvm -o - | FileCheck %s --check-prefix=IR
// RUN: moec %s -o %t.so && llvm-nm -D --defined-only %t.so | FileCheck %s --check-prefix=SYMBOLS
// RUN: llvm-readelf -d %t.so | FileCheck %s --check-prefix=NEEDED

// The model library exports the query function and nothing else; the entry
// point and its invoke wrapper are internal; the ABI tables carry the names,
// roles and the JSON signature.

// IR-DAG: define {{.*}}ptr @moe_abi_query()
// IR-DAG: define internal {{.*}}i32 @__moe_invoke_forward(ptr {{.*}}, ptr {{.*}})
// The matmul's row blocks run through the runtime's parallel_for.
// IR-DAG: define internal void @__moe_par_trampoline_0(ptr {{.*}}, i64 {{.*}}, i64 {{.*}})
// IR-DAG: @__moe_services = internal thread_local {{.*}}global ptr null
// IR-DAG: c"x\00"
// IR-DAG: c"w\00"
// IR-DAG: c"rows\00"
// IR-DAG: {\22abi_version\22:2,\22entries\22:[{\22args\22:[{\22dims\22:[\22rows\22,null],\22dtype\22:\22f32\22,\22name\22:\22x\22,\22role\22:\22input\22,\22shape\22:[-1,4]}

// SYMBOLS-NOT: forward
// SYMBOLS: T moe_abi_query
// SYMBOLS-NOT: forward

// The library needs the C library only.
// NEEDED: Shared library: [libm.so.6]
// NEEDED: Shared library: [libc.so.6]
// NEEDED-NOT: Shared library: [libstdc++

func.func @forward(%x: tensor<?x4xf32> {moe.name = "x", moe.dims = ["rows", ""]},
                   %w: tensor<4x4xf32> {moe.name = "w", moe.role = "parameter"})
    -> (tensor<?x4xf32> {moe.name = "y", moe.dims = ["rows", ""]}) {
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x4xf32>
  %e = tensor.empty(%n) : tensor<?x4xf32>
  %zero = arith.constant 0.0 : f32
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<?x4xf32>) -> tensor<?x4xf32>
  %y = linalg.matmul ins(%x, %w : tensor<?x4xf32>, tensor<4x4xf32>)
                     outs(%z : tensor<?x4xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
