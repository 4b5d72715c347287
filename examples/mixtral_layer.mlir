// A Mixtral-style MoE FFN layer: 8 SwiGLU experts, each token routed to its
// top-2 experts by softmax scores renormalised over the two, no capacity limit
// (dropless). d_model 128, d_ff 256, token count dynamic.
func.func @forward(
    %x: tensor<?x128xf32> {moe.name = "x", moe.dims = ["tokens", ""]},
    %router: tensor<128x8xf32> {moe.name = "router", moe.role = "parameter"},
    %w1: tensor<8x128x256xf32> {moe.name = "w1", moe.role = "parameter"},
    %w2: tensor<8x256x128xf32> {moe.name = "w2", moe.role = "parameter"},
    %w3: tensor<8x128x256xf32> {moe.name = "w3", moe.role = "parameter"})
    -> (tensor<?x128xf32> {moe.name = "y", moe.dims = ["tokens", ""]},
        tensor<f32> {moe.name = "aux_loss", moe.role = "metric"},
        tensor<f32> {moe.name = "z_loss", moe.role = "metric"},
        tensor<8xi64> {moe.name = "tokens_per_expert", moe.role = "metric"},
        tensor<i64> {moe.name = "dropped", moe.role = "metric"}) {
  %y, %aux, %z, %load, %dropped = moe.layer token_choice %x : tensor<?x128xf32>
      router %router : tensor<128x8xf32>
      experts swiglu %w1 : tensor<8x128x256xf32>, %w2 : tensor<8x256x128xf32>
      fc3 %w3 : tensor<8x128x256xf32>
      {k = 2 : i64, normalize}
  return %y, %aux, %z, %load, %dropped
      : tensor<?x128xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}
