// An expert-choice MoE FFN layer (Zhou et al., 2022): each of 8 GELU experts
// takes the ceil(2 * T / 8) tokens that score it highest, so every expert is
// exactly full and no load-balancing loss is needed; a token may be served by
// several experts or by none. d_model 64, d_ff 256, 256 tokens.
func.func @forward(
    %x: tensor<256x64xf32> {moe.name = "x"},
    %router: tensor<64x8xf32> {moe.name = "router", moe.role = "parameter"},
    %w1: tensor<8x64x256xf32> {moe.name = "w1", moe.role = "parameter"},
    %w2: tensor<8x256x64xf32> {moe.name = "w2", moe.role = "parameter"})
    -> (tensor<256x64xf32> {moe.name = "y"},
        tensor<f32> {moe.name = "z_loss", moe.role = "metric"},
        tensor<8xi64> {moe.name = "tokens_per_expert", moe.role = "metric"}) {
  %y, %aux, %z, %load, %dropped = moe.layer expert_choice %x : tensor<256x64xf32>
      router %router : tensor<64x8xf32>
      experts gelu %w1 : tensor<8x64x256xf32>, %w2 : tensor<8x256x64xf32>
      {capacity_factor = 2.0 : f64}
  return %y, %z, %load : tensor<256x64xf32>, tensor<f32>, tensor<8xi64>
}
