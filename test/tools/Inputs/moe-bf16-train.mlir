// A bf16 Mixtral-style MoE layer behind a projection (so that training needs
// the layer's input gradient too), with loss = z_loss(y): the backward pass
// runs every grouped product of the expert FFNs, transposed ones included.
func.func @forward(
    %x: tensor<?x64xbf16> {moe.name = "x", moe.dims = ["tokens", ""]},
    %proj: tensor<64x64xbf16> {moe.name = "proj", moe.role = "parameter"},
    %router: tensor<64x8xbf16> {moe.name = "router", moe.role = "parameter"},
    %w1: tensor<8x64x96xbf16> {moe.name = "w1", moe.role = "parameter"},
    %w2: tensor<8x96x64xbf16> {moe.name = "w2", moe.role = "parameter"},
    %w3: tensor<8x64x96xbf16> {moe.name = "w3", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %h = nn.linear %x, %proj : tensor<?x64xbf16>, tensor<64x64xbf16>
  %y, %aux, %z, %load, %dropped = moe.layer token_choice %h : tensor<?x64xbf16>
      router %router : tensor<64x8xbf16>
      experts swiglu %w1 : tensor<8x64x96xbf16>, %w2 : tensor<8x96x64xbf16>
      fc3 %w3 : tensor<8x64x96xbf16>
      {k = 2 : i64, normalize}
  %loss = moe.z_loss %y : tensor<?x64xbf16>
  return %loss : tensor<f32>
}
