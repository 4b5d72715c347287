//===- SparseMoE.cpp - Sparse per-expert MoE graphs -> the dense form -----===//
//
// torch.onnx exports an MoE FFN written with index_add_ (HF Mixtral) as, per
// expert e:
//
//   hit    = Equal(topk_indices, e)
//   where  = NonZero(hit)                         [2, M]: (token, slot)
//   rows   = Gather(where, 0, axis=0)             tokens routed to e
//   chosen = GatherND(topk_values, Transpose(where))
//   y      = FFN_e(Gather(x, rows, axis=0)) * Unsqueeze(chosen, -1)
//   out    = ScatterND(out, Unsqueeze(rows, -1), y, reduction=add)
//            (or ScatterElements(out, Expand(Unsqueeze(rows, -1), Shape(y)),
//             y, axis=0, reduction=add))
//
// with data-dependent shapes (NonZero). The same sum over experts is
//
//   out += ReduceSum(Where(hit, topk_values, 0), -1, keepdims) * FFN_e(x)
//
// the dense form that moe-raise-decomposed turns into routing, dispatch and
// one grouped expert FFN. This rewrite runs on the ONNX graph before import,
// so a recognised sparse graph never needs NonZero or the scatters; anything
// else is left alone (and reported if its ops are unsupported).
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "llvm/ADT/STLExtras.h"

#include <cstring>
#include <map>
#include <set>

using namespace moec;
using namespace moec::onnx_import;

namespace {

class SparseMoERewriter {
public:
  explicit SparseMoERewriter(onnx::GraphProto &graph) : graph(graph) {}

  void run();

private:
  struct Expert {
    int scatter = -1;      // the ScatterND / ScatterElements node
    int mul = -1;          // y * Unsqueeze(chosen)
    std::string hit;       // Equal(indices, e)
    std::string values;    // the top-k weights
    std::string picked;    // Gather(x, rows): the FFN's input
    std::string tokens;    // x
    std::string ffnOutput; // y
  };

  void index();
  const onnx::NodeProto *producer(const std::string &name) const;
  bool is(const onnx::NodeProto *node, const char *type) const {
    return node && node->op_type() == type &&
           (node->domain().empty() || node->domain() == "ai.onnx");
  }
  bool isConstant(const std::string &name, double value) const;
  std::optional<int32_t> initializerType(const std::string &name) const;
  /// `Unsqueeze(x, [-1])` (or [1] for the rank-1 x); returns x.
  std::string unsqueezedLast(const std::string &name) const;
  bool matchExpert(int scatterIndex, Expert &expert) const;
  void rewrite(const Expert &expert);
  void dropZeroStart();
  void sortTopologically();
  std::string newName(const std::string &hint);
  void removeDeadNodes();

  onnx::GraphProto &graph;
  std::map<std::string, int> producers;
  std::map<std::string, const onnx::TensorProto *> initializers;
  std::set<std::string> names;
  int counter = 0;
};

void SparseMoERewriter::index() {
  producers.clear();
  initializers.clear();
  for (int i = 0; i < graph.node_size(); ++i)
    for (const std::string &output : graph.node(i).output()) {
      producers[output] = i;
      names.insert(output);
    }
  for (const onnx::TensorProto &tensor : graph.initializer()) {
    initializers[tensor.name()] = &tensor;
    names.insert(tensor.name());
  }
}

const onnx::NodeProto *
SparseMoERewriter::producer(const std::string &name) const {
  auto it = producers.find(name);
  return it == producers.end() ? nullptr : &graph.node(it->second);
}

/// A scalar (or one-element) integer or float constant equal to `value`,
/// from an initializer or a Constant node.
bool SparseMoERewriter::isConstant(const std::string &name,
                                   double value) const {
  const onnx::TensorProto *tensor = nullptr;
  if (auto it = initializers.find(name); it != initializers.end())
    tensor = it->second;
  else if (const onnx::NodeProto *node = producer(name);
           is(node, "Constant") && node->attribute_size() == 1 &&
           node->attribute(0).name() == "value")
    tensor = &node->attribute(0).t();
  if (!tensor)
    return false;
  try {
    TensorData data = readTensor(*tensor, "");
    if (data.numElements() != 1)
      return false;
    switch (data.onnxType) {
    case onnx::TensorProto::INT64: {
      int64_t v;
      std::memcpy(&v, data.bytes.data(), 8);
      return v == value;
    }
    case onnx::TensorProto::INT32: {
      int32_t v;
      std::memcpy(&v, data.bytes.data(), 4);
      return v == value;
    }
    case onnx::TensorProto::FLOAT: {
      float v;
      std::memcpy(&v, data.bytes.data(), 4);
      return v == value;
    }
    default:
      return false;
    }
  } catch (const ImportError &) {
    return false;
  }
}

std::optional<int32_t>
SparseMoERewriter::initializerType(const std::string &name) const {
  auto it = initializers.find(name);
  if (it == initializers.end())
    return std::nullopt;
  return it->second->data_type();
}

std::string SparseMoERewriter::unsqueezedLast(const std::string &name) const {
  const onnx::NodeProto *node = producer(name);
  if (!is(node, "Unsqueeze") || node->input_size() != 2)
    return "";
  if (!isConstant(node->input(1), -1) && !isConstant(node->input(1), 1))
    return "";
  return node->input(0);
}

bool SparseMoERewriter::matchExpert(int scatterIndex, Expert &expert) const {
  const onnx::NodeProto &scatter = graph.node(scatterIndex);
  bool scatterND = is(&scatter, "ScatterND");
  bool scatterElements = is(&scatter, "ScatterElements");
  if ((!scatterND && !scatterElements) || scatter.input_size() != 3)
    return false;
  std::string reduction;
  int64_t axis = 0;
  for (const onnx::AttributeProto &attr : scatter.attribute()) {
    if (attr.name() == "reduction")
      reduction = attr.s();
    if (attr.name() == "axis")
      axis = attr.i();
  }
  if (reduction != "add" || axis != 0)
    return false;

  // The target rows: Unsqueeze(rows, -1), expanded for ScatterElements.
  std::string targets = scatter.input(1);
  if (scatterElements) {
    const onnx::NodeProto *expand = producer(targets);
    if (!is(expand, "Expand"))
      return false;
    targets = expand->input(0);
  }
  std::string rows = unsqueezedLast(targets);
  const onnx::NodeProto *rowsNode = producer(rows);
  if (!is(rowsNode, "Gather") || !isConstant(rowsNode->input(1), 0))
    return false;
  for (const onnx::AttributeProto &attr : rowsNode->attribute())
    if (attr.name() == "axis" && attr.i() != 0)
      return false;
  std::string where = rowsNode->input(0);
  const onnx::NodeProto *nonZero = producer(where);
  if (!is(nonZero, "NonZero"))
    return false;
  expert.hit = nonZero->input(0);
  const onnx::NodeProto *equal = producer(expert.hit);
  if (!is(equal, "Equal"))
    return false;

  // updates = y * Unsqueeze(GatherND(values, Transpose(where)), -1).
  const onnx::NodeProto *mul = producer(scatter.input(2));
  if (!is(mul, "Mul"))
    return false;
  for (int side = 0; side < 2; ++side) {
    std::string chosen = unsqueezedLast(mul->input(side));
    const onnx::NodeProto *gatherND = producer(chosen);
    if (!is(gatherND, "GatherND"))
      continue;
    const onnx::NodeProto *transpose = producer(gatherND->input(1));
    if (!is(transpose, "Transpose") || transpose->input(0) != where)
      continue;
    expert.values = gatherND->input(0);
    expert.ffnOutput = mul->input(1 - side);
  }
  if (expert.values.empty())
    return false;

  // The FFN reads Gather(x, rows, axis=0) of the same rows.
  for (const onnx::NodeProto &node : graph.node()) {
    if (!is(&node, "Gather") || node.input_size() != 2 ||
        node.input(1) != rows || &node == rowsNode)
      continue;
    bool axis0 = true;
    for (const onnx::AttributeProto &attr : node.attribute())
      if (attr.name() == "axis" && attr.i() != 0)
        axis0 = false;
    if (axis0) {
      expert.picked = node.output(0);
      expert.tokens = node.input(0);
    }
  }
  if (expert.picked.empty())
    return false;
  expert.scatter = scatterIndex;
  expert.mul = producers.at(scatter.input(2));
  return true;
}

std::string SparseMoERewriter::newName(const std::string &hint) {
  std::string name;
  do
    name = "__moec_sparse_moe_" + hint + "_" + std::to_string(counter++);
  while (names.count(name));
  names.insert(name);
  return name;
}

void SparseMoERewriter::rewrite(const Expert &expert) {
  // The FFN now reads every token.
  for (onnx::NodeProto &node : *graph.mutable_node())
    for (std::string &input : *node.mutable_input())
      if (input == expert.picked)
        input = expert.tokens;

  // The routing weight of every token for this expert, in the FFN's type
  // (that of its first weight).
  int32_t type = onnx::TensorProto::FLOAT;
  for (const onnx::NodeProto &node : graph.node())
    if (node.input_size() == 2 && node.input(0) == expert.tokens &&
        (node.op_type() == "MatMul" || node.op_type() == "Gemm"))
      if (std::optional<int32_t> t = initializerType(node.input(1)))
        type = *t;
  onnx::TensorProto *zero = graph.add_initializer();
  zero->set_name(newName("zero"));
  zero->set_data_type(type);
  zero->set_raw_data(std::string(onnxElementSize(type), '\0'));
  onnx::TensorProto *axes = graph.add_initializer();
  axes->set_name(newName("axes"));
  axes->set_data_type(onnx::TensorProto::INT64);
  axes->add_dims(1);
  axes->add_int64_data(-1);

  onnx::NodeProto masked, weight;
  masked.set_op_type("Where");
  masked.add_input(expert.hit);
  masked.add_input(expert.values);
  masked.add_input(zero->name());
  masked.add_output(newName("masked"));
  weight.set_op_type("ReduceSum");
  weight.add_input(masked.output(0));
  weight.add_input(axes->name());
  weight.add_output(newName("weight"));
  onnx::AttributeProto *keepDims = weight.add_attribute();
  keepDims->set_name("keepdims");
  keepDims->set_type(onnx::AttributeProto::INT);
  keepDims->set_i(1);

  onnx::NodeProto &mul = *graph.mutable_node(expert.mul);
  mul.clear_input();
  mul.add_input(weight.output(0));
  mul.add_input(expert.ffnOutput);
  onnx::NodeProto &scatter = *graph.mutable_node(expert.scatter);
  std::string accumulator = scatter.input(0);
  std::string term = mul.output(0);
  scatter.clear_input();
  scatter.clear_attribute();
  scatter.set_op_type("Add");
  scatter.add_input(accumulator);
  scatter.add_input(term);
  // Appended; run() restores the topological order.
  *graph.add_node() = std::move(masked);
  *graph.add_node() = std::move(weight);
}

/// An accumulator that starts as x * 0 (exporters' zeros_like) starts from
/// the first expert's term instead, which is what it equals for finite x.
void SparseMoERewriter::dropZeroStart() {
  index();
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    if (!is(&node, "Add") || node.input_size() != 2)
      continue;
    const onnx::NodeProto *start = producer(node.input(0));
    if (!is(start, "Mul") ||
        (!isConstant(start->input(0), 0) && !isConstant(start->input(1), 0)))
      continue;
    int uses = 0;
    for (const onnx::NodeProto &other : graph.node())
      uses += llvm::count(other.input(), node.input(0));
    if (uses != 1)
      continue;
    std::string term = node.input(1);
    node.clear_input();
    node.set_op_type("Identity");
    node.add_input(term);
  }
}

/// Kahn's algorithm over value names: appended nodes move after the values
/// they read.
void SparseMoERewriter::sortTopologically() {
  std::set<std::string> available;
  for (const onnx::ValueInfoProto &input : graph.input())
    available.insert(input.name());
  for (const onnx::TensorProto &tensor : graph.initializer())
    available.insert(tensor.name());
  available.insert("");
  std::vector<onnx::NodeProto> pending(graph.node().begin(),
                                       graph.node().end());
  graph.clear_node();
  while (!pending.empty()) {
    auto ready = llvm::find_if(pending, [&](const onnx::NodeProto &node) {
      return llvm::all_of(node.input(), [&](const std::string &input) {
        return available.count(input);
      });
    });
    if (ready == pending.end()) // a cycle: keep the rest as it was
      ready = pending.begin();
    for (const std::string &output : ready->output())
      available.insert(output);
    *graph.add_node() = std::move(*ready);
    pending.erase(ready);
  }
}

void SparseMoERewriter::removeDeadNodes() {
  std::set<std::string> outputs;
  for (const onnx::ValueInfoProto &output : graph.output())
    outputs.insert(output.name());
  bool changed = true;
  while (changed) {
    changed = false;
    std::set<std::string> used(outputs);
    for (const onnx::NodeProto &node : graph.node())
      for (const std::string &input : node.input())
        used.insert(input);
    auto *nodes = graph.mutable_node();
    for (int i = nodes->size() - 1; i >= 0; --i) {
      const onnx::NodeProto &node = nodes->Get(i);
      bool dead = llvm::none_of(node.output(), [&](const std::string &o) {
        return used.count(o);
      });
      if (dead) {
        nodes->DeleteSubrange(i, 1);
        changed = true;
      }
    }
  }
}

void SparseMoERewriter::run() {
  index();
  std::vector<Expert> experts;
  for (int i = 0; i < graph.node_size(); ++i) {
    Expert expert;
    if (matchExpert(i, expert))
      experts.push_back(expert);
  }
  if (experts.empty())
    return;
  // Node positions stay valid: rewrites only append nodes.
  for (const Expert &expert : experts)
    rewrite(expert);
  removeDeadNodes();
  dropZeroStart();
  sortTopologically();
}

} // namespace

void moec::onnx_import::rewriteSparseMoE(onnx::GraphProto &graph) {
  SparseMoERewriter(graph).run();
}
