// A Switch-Transformer-style MoE FFN layer: top-1 routing over 8 ReLU experts
// with capacity factor 1.25, so an expert keeps at most
// ceil(1.25 * T / 8) tokens and drops the rest (their output is zero; the
// residual connection around the layer carries them). Router jitter with
// eps 0.01 draws from `seed`. d_model 64, d_ff 256.
func.func @forward(
    %x: tensor<?x64xf32> {moe.name = "x", moe.dims = ["tokens", ""]},
    %router: tensor<64x8xf32> {moe.name = "router", moe.role = "parameter"},
    %w1: tensor<8x64x256xf32> {moe.name = "w1", moe.role = "parameter"},
    %b1: tensor<8x256xf32> {moe.name = "b1", moe.role = "parameter"},
    %w2: tensor<8x256x64xf32> {moe.name = "w2", moe.role = "parameter"},
    %b2: tensor<8x64xf32> {moe.name = "b2", moe.role = "parameter"},
    %seed: i64 {moe.name = "seed"})
    -> (tensor<?x64xf32> {moe.name = "y", moe.dims = ["tokens", ""]},
        tensor<f32> {moe.name = "aux_loss", moe.role = "metric"},
        tensor<f32> {moe.name = "z_loss", moe.role = "metric"},
        tensor<8xi64> {moe.name = "tokens_per_expert", moe.role = "metric"},
        tensor<i64> {moe.name = "dropped", moe.role = "metric"}) {
  %y, %aux, %z, %load, %dropped = moe.layer token_choice %x : tensor<?x64xf32>
      router %router : tensor<64x8xf32>
      experts relu %w1 : tensor<8x64x256xf32>, %w2 : tensor<8x256x64xf32>
      fc1_bias %b1 : tensor<8x256xf32> fc2_bias %b2 : tensor<8x64xf32>
      seed %seed
      {k = 1 : i64, capacity_factor = 1.25 : f64, jitter_eps = 0.01 : f32}
  return %y, %aux, %z, %load, %dropped
      : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}
