// A tiny decoder-only MoE language model: byte-level vocabulary (256),
// d_model 64, 2 layers, each with rotary grouped-query attention (4 query
// heads, 2 key/value heads of 16) and an MoE feed-forward of 4 SwiGLU
// experts (d_ff 128) with top-2 renormalised routing, RMSNorm, an LM head and
// the masked cross-entropy that instruction tuning uses. Batch 8, sequence
// length dynamic.
//
// Returns the loss, the logits, the summed load-balancing and z losses and
// each layer's tokens per expert.
func.func @forward(
    %tokens: tensor<8x?xi32> {moe.name = "tokens", moe.dims = ["", "seq"]},
    %targets: tensor<8x?xi32> {moe.name = "targets", moe.dims = ["", "seq"]},
    %mask: tensor<8x?xf32> {moe.name = "mask", moe.dims = ["", "seq"]},
    %embed: tensor<256x64xf32> {moe.name = "embed", moe.role = "parameter"},
    %l0_attn_norm: tensor<64xf32> {moe.name = "layers.0.attn_norm", moe.role = "parameter"},
    %l0_wq: tensor<64x64xf32> {moe.name = "layers.0.wq", moe.role = "parameter"},
    %l0_wk: tensor<64x32xf32> {moe.name = "layers.0.wk", moe.role = "parameter"},
    %l0_wv: tensor<64x32xf32> {moe.name = "layers.0.wv", moe.role = "parameter"},
    %l0_wo: tensor<64x64xf32> {moe.name = "layers.0.wo", moe.role = "parameter"},
    %l0_ffn_norm: tensor<64xf32> {moe.name = "layers.0.ffn_norm", moe.role = "parameter"},
    %l0_router: tensor<64x4xf32> {moe.name = "layers.0.router", moe.role = "parameter"},
    %l0_w1: tensor<4x64x128xf32> {moe.name = "layers.0.w1", moe.role = "parameter"},
    %l0_w2: tensor<4x128x64xf32> {moe.name = "layers.0.w2", moe.role = "parameter"},
    %l0_w3: tensor<4x64x128xf32> {moe.name = "layers.0.w3", moe.role = "parameter"},
    %l1_attn_norm: tensor<64xf32> {moe.name = "layers.1.attn_norm", moe.role = "parameter"},
    %l1_wq: tensor<64x64xf32> {moe.name = "layers.1.wq", moe.role = "parameter"},
    %l1_wk: tensor<64x32xf32> {moe.name = "layers.1.wk", moe.role = "parameter"},
    %l1_wv: tensor<64x32xf32> {moe.name = "layers.1.wv", moe.role = "parameter"},
    %l1_wo: tensor<64x64xf32> {moe.name = "layers.1.wo", moe.role = "parameter"},
    %l1_ffn_norm: tensor<64xf32> {moe.name = "layers.1.ffn_norm", moe.role = "parameter"},
    %l1_router: tensor<64x4xf32> {moe.name = "layers.1.router", moe.role = "parameter"},
    %l1_w1: tensor<4x64x128xf32> {moe.name = "layers.1.w1", moe.role = "parameter"},
    %l1_w2: tensor<4x128x64xf32> {moe.name = "layers.1.w2", moe.role = "parameter"},
    %l1_w3: tensor<4x64x128xf32> {moe.name = "layers.1.w3", moe.role = "parameter"},
    %final_norm: tensor<64xf32> {moe.name = "final_norm", moe.role = "parameter"},
    %lm_head: tensor<64x256xf32> {moe.name = "lm_head", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"},
        tensor<8x?x256xf32> {moe.name = "logits", moe.dims = ["", "seq", ""]},
        tensor<f32> {moe.name = "aux_loss", moe.role = "metric"},
        tensor<f32> {moe.name = "z_loss", moe.role = "metric"},
        tensor<4xi64> {moe.name = "layers.0.tokens_per_expert", moe.role = "metric"},
        tensor<4xi64> {moe.name = "layers.1.tokens_per_expert", moe.role = "metric"}) {
  %h0 = nn.embedding %embed, %tokens : tensor<256x64xf32>, tensor<8x?xi32>

  // Layer 0: pre-norm causal self-attention (rotary, grouped-query 4/2 heads).
  %l0_x = nn.rms_norm %h0, %l0_attn_norm : tensor<8x?x64xf32>, tensor<64xf32>
  %l0_q_flat = nn.linear %l0_x, %l0_wq : tensor<8x?x64xf32>, tensor<64x64xf32>
  %l0_q = nn.reshape %l0_q_flat : tensor<8x?x64xf32> -> tensor<8x?x4x16xf32>
  %l0_k_flat = nn.linear %l0_x, %l0_wk : tensor<8x?x64xf32>, tensor<64x32xf32>
  %l0_k = nn.reshape %l0_k_flat : tensor<8x?x32xf32> -> tensor<8x?x2x16xf32>
  %l0_v_flat = nn.linear %l0_x, %l0_wv : tensor<8x?x64xf32>, tensor<64x32xf32>
  %l0_v = nn.reshape %l0_v_flat : tensor<8x?x32xf32> -> tensor<8x?x2x16xf32>
  %l0_q_rot = nn.rotary %l0_q : tensor<8x?x4x16xf32>
  %l0_k_rot = nn.rotary %l0_k : tensor<8x?x2x16xf32>
  %l0_attn = nn.attention %l0_q_rot, %l0_k_rot, %l0_v : tensor<8x?x4x16xf32>, tensor<8x?x2x16xf32>, tensor<8x?x2x16xf32>
  %l0_attn_flat = nn.reshape %l0_attn : tensor<8x?x4x16xf32> -> tensor<8x?x64xf32>
  %l0_attn_out = nn.linear %l0_attn_flat, %l0_wo : tensor<8x?x64xf32>, tensor<64x64xf32>
  %l0_resid = nn.add %h0, %l0_attn_out : tensor<8x?x64xf32>, tensor<8x?x64xf32>
  // Layer 0: MoE feed-forward, 4 SwiGLU experts, top-2 renormalised (Mixtral).
  %l0_y = nn.rms_norm %l0_resid, %l0_ffn_norm : tensor<8x?x64xf32>, tensor<64xf32>
  %l0_tokens = nn.reshape %l0_y : tensor<8x?x64xf32> -> tensor<?x64xf32>
  %l0_moe, %l0_aux, %l0_z, %l0_load, %l0_dropped = moe.layer token_choice %l0_tokens : tensor<?x64xf32>
      router %l0_router : tensor<64x4xf32>
      experts swiglu %l0_w1 : tensor<4x64x128xf32>, %l0_w2 : tensor<4x128x64xf32>
      fc3 %l0_w3 : tensor<4x64x128xf32>
      {k = 2 : i64, normalize, capacity_factor = 1.25 : f64, eval_capacity_factor = 2.0 : f64}
  %l0_moe_seq = nn.reshape %l0_moe : tensor<?x64xf32> -> tensor<8x?x64xf32>
  %h1 = nn.add %l0_resid, %l0_moe_seq : tensor<8x?x64xf32>, tensor<8x?x64xf32>

  // Layer 1: pre-norm causal self-attention (rotary, grouped-query 4/2 heads).
  %l1_x = nn.rms_norm %h1, %l1_attn_norm : tensor<8x?x64xf32>, tensor<64xf32>
  %l1_q_flat = nn.linear %l1_x, %l1_wq : tensor<8x?x64xf32>, tensor<64x64xf32>
  %l1_q = nn.reshape %l1_q_flat : tensor<8x?x64xf32> -> tensor<8x?x4x16xf32>
  %l1_k_flat = nn.linear %l1_x, %l1_wk : tensor<8x?x64xf32>, tensor<64x32xf32>
  %l1_k = nn.reshape %l1_k_flat : tensor<8x?x32xf32> -> tensor<8x?x2x16xf32>
  %l1_v_flat = nn.linear %l1_x, %l1_wv : tensor<8x?x64xf32>, tensor<64x32xf32>
  %l1_v = nn.reshape %l1_v_flat : tensor<8x?x32xf32> -> tensor<8x?x2x16xf32>
  %l1_q_rot = nn.rotary %l1_q : tensor<8x?x4x16xf32>
  %l1_k_rot = nn.rotary %l1_k : tensor<8x?x2x16xf32>
  %l1_attn = nn.attention %l1_q_rot, %l1_k_rot, %l1_v : tensor<8x?x4x16xf32>, tensor<8x?x2x16xf32>, tensor<8x?x2x16xf32>
  %l1_attn_flat = nn.reshape %l1_attn : tensor<8x?x4x16xf32> -> tensor<8x?x64xf32>
  %l1_attn_out = nn.linear %l1_attn_flat, %l1_wo : tensor<8x?x64xf32>, tensor<64x64xf32>
  %l1_resid = nn.add %h1, %l1_attn_out : tensor<8x?x64xf32>, tensor<8x?x64xf32>
  // Layer 1: MoE feed-forward, 4 SwiGLU experts, top-2 renormalised (Mixtral).
  %l1_y = nn.rms_norm %l1_resid, %l1_ffn_norm : tensor<8x?x64xf32>, tensor<64xf32>
  %l1_tokens = nn.reshape %l1_y : tensor<8x?x64xf32> -> tensor<?x64xf32>
  %l1_moe, %l1_aux, %l1_z, %l1_load, %l1_dropped = moe.layer token_choice %l1_tokens : tensor<?x64xf32>
      router %l1_router : tensor<64x4xf32>
      experts swiglu %l1_w1 : tensor<4x64x128xf32>, %l1_w2 : tensor<4x128x64xf32>
      fc3 %l1_w3 : tensor<4x64x128xf32>
      {k = 2 : i64, normalize, capacity_factor = 1.25 : f64, eval_capacity_factor = 2.0 : f64}
  %l1_moe_seq = nn.reshape %l1_moe : tensor<?x64xf32> -> tensor<8x?x64xf32>
  %h2 = nn.add %l1_resid, %l1_moe_seq : tensor<8x?x64xf32>, tensor<8x?x64xf32>

  // LM head and the masked next-token loss.
  %hf = nn.rms_norm %h2, %final_norm : tensor<8x?x64xf32>, tensor<64xf32>
  %logits = nn.linear %hf, %lm_head : tensor<8x?x64xf32>, tensor<64x256xf32>
  %loss = nn.cross_entropy %logits, %targets mask %mask : tensor<8x?x256xf32>, tensor<8x?xi32>, tensor<8x?xf32>
  %aux = nn.add %l0_aux, %l1_aux : tensor<f32>, tensor<f32>
  %z = nn.add %l0_z, %l1_z : tensor<f32>, tensor<f32>
  return %loss, %logits, %aux, %z, %l0_load, %l1_load
      : tensor<f32>, tensor<8x?x256xf32>, tensor<f32>, tensor<f32>, tensor<4xi64>, tensor<4xi64>
}
