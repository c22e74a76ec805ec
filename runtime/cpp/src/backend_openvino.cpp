// OpenVINO CPU backend (the C++ API from the openvino PyPI wheel). Same choices as the Python backend:
// static shapes per binding, INFERENCE_NUM_THREADS = threads, one stream, LATENCY, f32 inference precision
// (so AVX-512 BF16 / AMX CPUs do not silently run fp32 graphs in bf16), tensors wrapping the host buffers.
#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include "runtime.hpp"

namespace turbo_edge {

size_t Buffer::count() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

namespace {

ov::element::Type element(DType t) { return t == DType::I64 ? ov::element::i64 : ov::element::f32; }

DType dtype_of(const ov::element::Type& t, const std::string& name) {
  if (t == ov::element::f32) return DType::F32;
  if (t == ov::element::i64) return DType::I64;
  throw BackendUnavailable("tensor " + name + " has element type " + t.get_type_name() +
                           "; the C++ host binds f32 / i64 I/O only (fp32 and int8 Q/DQ bundles; run fp16 bundles from Python)");
}

Buffer make_buffer(DType t, const std::vector<int64_t>& shape) {
  Buffer b;
  b.dtype = t;
  b.shape = shape;
  b.bytes.assign(b.count() * (t == DType::I64 ? 8 : 4), 0);
  return b;
}

class OpenVinoBackend : public Backend {
 public:
  using Backend::Backend;

  // ONNX through the ONNX frontend only: Core::read_model tries every frontend in turn, and on a damaged file
  // TensorFlow's prints its parse errors to stderr before the read fails. An OpenVINO IR variant (the manifest's
  // "formats": int8_format=openvino) is the .xml, read with the .bin beside it (both hashed bundle files).
  void load(const std::string& path) override {
    try {
      const std::string ir = ".xml";
      if (path.size() > ir.size() && path.compare(path.size() - ir.size(), ir.size(), ir) == 0) {
        model_ = core_.read_model(path, path.substr(0, path.size() - ir.size()) + ".bin");
        return;
      }
      ov::frontend::FrontEndManager manager;
      ov::frontend::FrontEnd::Ptr onnx = manager.load_by_framework("onnx");
      model_ = onnx->convert(onnx->load(path));
    } catch (const std::exception& e) {
      std::string what = e.what(), line;
      for (size_t start = 0; start < what.size();) {  // the last non-empty line of OpenVINO's multi-line message
        size_t end = what.find('\n', start);
        std::string l = what.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (l.find_first_not_of(" \t") != std::string::npos) line = l;
        if (end == std::string::npos) break;
        start = end + 1;
      }
      throw BundleError(path + ": the openvino backend cannot load this graph (" + line.substr(0, 200) +
                        "); run `turbo-edge verify` on the bundle, or re-export it");
    }
  }

  Binding allocate(const Shapes& inputs, const Shapes& outputs) override {
    std::map<std::string, ov::PartialShape> static_shapes;
    for (const auto& [name, shape] : inputs) static_shapes[name] = ov::PartialShape(std::vector<ov::Dimension>(shape.begin(), shape.end()));
    auto model = model_->clone();
    model->reshape(static_shapes);
    auto compiled = std::make_shared<ov::CompiledModel>(core_.compile_model(
        model, "CPU", ov::inference_num_threads(threads_), ov::num_streams(1), ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY),
        ov::hint::inference_precision(ov::element::f32)));
    auto request = std::make_shared<ov::InferRequest>(compiled->create_infer_request());
    Binding b;
    for (const auto& [name, shape] : inputs) b.inputs[name] = make_buffer(dtype_of(compiled->input(name).get_element_type(), name), shape);
    for (const auto& [name, shape] : outputs) b.outputs[name] = make_buffer(dtype_of(compiled->output(name).get_element_type(), name), shape);
    for (auto* group : {&b.inputs, &b.outputs})
      for (auto& [name, buf] : *group)
        request->set_tensor(name, ov::Tensor(element(buf.dtype), ov::Shape(buf.shape.begin(), buf.shape.end()), buf.bytes.data()));
    // The request must outlive its compiled model's users; keep both alive in the handle.
    b.handle = std::make_shared<std::pair<std::shared_ptr<ov::CompiledModel>, std::shared_ptr<ov::InferRequest>>>(compiled, request);
    return b;
  }

  void infer(Binding& b) override {
    auto* state = static_cast<std::pair<std::shared_ptr<ov::CompiledModel>, std::shared_ptr<ov::InferRequest>>*>(b.handle.get());
    state->second->infer();
  }

 private:
  ov::Core core_;
  std::shared_ptr<ov::Model> model_;
};

}  // namespace

std::unique_ptr<Backend> create_backend(const std::string& name, int threads) {
  if (name == "openvino") return std::make_unique<OpenVinoBackend>(threads);
  throw BackendUnavailable("backend '" + name + "' is not built into the C++ runtime; it has 'openvino' (ONNX Runtime ships no C++ headers "
                           "in any registry this project builds from; use the Python runtime for ort-cpu / ort-cuda / tensorrt)");
}

}  // namespace turbo_edge
