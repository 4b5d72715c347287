func.func @f(%x: tensor<4xf32> {moe.name = "a"}) -> (tensor<4xf32> {moe.name = "a"}) {
  return %x : tensor<4xf32>
}
