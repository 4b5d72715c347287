// A Switch-Transformer-style MoE FFN layer: top-1 routing over 8 ReLU experts
// with capacity factor 1.25, so an expert keeps at most
// ceil(1.25 * T / 8) tokens and drops the rest (their output is zero; the
// residual connection around the layer carries them). Router jitter with
// eps 0.01 applies when a seed is given. d_model 64, d_ff 256.
func.func @forward(%x: tensor<?x64xf32>, %router: tensor<64x8xf32>,
                   %w1: tensor<8x64x256xf32>, %b1: tensor<8x256xf32>,
                   %w2: tensor<8x256x64xf32>, %b2: tensor<8x64xf32>,
                   %seed: i64)
    -> (tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>) {
  %y, %aux, %z, %load, %dropped = moe.layer token_choice %x : tensor<?x64xf32>
      router %router : tensor<64x8xf32>
      experts relu %w1 : tensor<8x64x256xf32>, %w2 : tensor<8x256x64xf32>
      fc1_bias %b1 : tensor<8x256xf32> fc2_bias %b2 : tensor<8x64xf32>
      seed %seed
      {k = 1 : i64, capacity_factor = 1.25 : f64, jitter_eps = 0.01 : f32}
  return %y, %aux, %z, %load, %dropped
      : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}
