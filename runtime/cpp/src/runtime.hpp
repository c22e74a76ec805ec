// The C++ runtime over a turbo-edge bundle: manifest + sha256 verification, samplers, backends, pipeline.
// Mirrors turbo_edge/runtime/{bundle,samplers,pipeline}.py; the same prompt, seed and bundle give the same
// frames (within 1 per uint8 value) as the Python runtime on the same backend.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "json.hpp"
#include "tokenizer.hpp"

namespace turbo_edge {

// ------------------------------------------------------------------ bundle

// spec/bundle.py DECODER_FIRST_STEP: the first-latent-frame graph of a "steps" decoder (a bundle with a range of clip lengths).
inline constexpr const char* kFirstStep = "vae_decoder_first";

struct SamplerSpec {
  std::string kind;             // "ddim_cfg" | "consistency" | "flow_euler_cfg"
  double flow_shift = 0.0;  // > 0: a flow-matching contract (spec/sampler.py flow_shift): no alphas_cumprod
  std::map<int, std::vector<double>> flow_timesteps, sigmas;  // flow: steps -> sigma * N per step, and steps + 1 sigmas
  std::string prediction_type;  // "epsilon" | "v_prediction" | "sample"
  int num_train_timesteps = 1000;
  std::vector<double> alphas_cumprod;
  double final_alpha_cumprod = 1.0;
  int default_steps = 4;
  std::map<int, std::vector<int>> timesteps;  // steps -> descending timesteps
  double guidance = 1.0;
  bool uses_cfg = false;
  int w_embedding_dim = 0;  // 0: no timestep_cond input
  double timestep_scaling = 10.0;
  double sigma_data = 0.5;
};

struct Bundle {
  std::string root;
  Json manifest;
  SamplerSpec sampler;
  int latent_channels = 0, latent_frames = 0, latent_height = 0, latent_width = 0;
  int frames = 0, height = 0, width = 0;
  int text_length = 0, text_hidden = 0;
  int temporal_factor = 1;          // latent.temporal_factor: pixel frames per latent frame (a causal autoencoder: 1 + t (f - 1))
  bool causal_first_frame = false;  // latent.causal_first_frame
  bool clip_decoder = false;        // the decoder takes a whole clip [B, C, f, h, w] (export/dit.py), not frames
  std::vector<std::string> closed_vocabulary;  // empty: open vocabulary

  static Bundle load(const std::string& root, bool verify = true);  // throws BundleError
  // Decoders (spec/bundle.py bundle_decoders): names with the default first; decoder(name) gives its component and
  // layout ("frames": per-frame VAE graph; "video": a causal autoencoder's whole-clip graph [B, C, f, h, w] -> [B, 3, F, H, W];
  // "clip": a variant, [B, C, f, h, w] -> [B, F, 3, H, W]; F = 1 + t (f - 1) for a causal autoencoder, else f); "" is the
  // default; a name the bundle lacks is refused in one line naming those it has.
  std::vector<std::string> decoder_names() const;
  std::pair<std::string, std::string> decoder(const std::string& name) const;
  std::string model_path(const std::string& component, const std::string& precision) const;
  long long profile_max(const std::string& component, const std::string& input, size_t axis, long long fallback) const;
  long long profile_min(const std::string& component, const std::string& input, size_t axis, long long fallback) const;
};

struct BundleError : std::runtime_error { using std::runtime_error::runtime_error; };
struct InputError : std::runtime_error { using std::runtime_error::runtime_error; };
struct BackendUnavailable : std::runtime_error { using std::runtime_error::runtime_error; };
struct Cancelled : std::runtime_error { using std::runtime_error::runtime_error; };

// ------------------------------------------------------------------ input rules (spec/inputs.py, same messages)

// Each check throws InputError naming the value as the caller shows it (the host: the flag's text in quotes).
long long thread_cap();  // 4x this machine's cores
void check_seed(unsigned long long seed, const std::string& shown);
void check_guidance(double guidance, const std::string& shown);
void check_threads(long long threads, const std::string& shown);

// ------------------------------------------------------------------ samplers (pure: no IO, no backend)

// model_fn(x, t) returns the network's raw prediction; for ddim_cfg [2B * n] with the unconditional half first.
using ModelFn = std::function<const float*(const float* x, double t)>;  // t: an integer timestep, or sigma * N (flow)
using NoiseFn = std::function<void(int step, float* out)>;  // fresh standard normal noise shaped like x

void ddim_cfg(const ModelFn& model_fn, float* x, size_t n, const std::vector<int>& timesteps, const SamplerSpec& spec, double guidance);
void consistency(const ModelFn& model_fn, float* x, size_t n, const std::vector<int>& timesteps, const SamplerSpec& spec,
                 const NoiseFn& noise_fn);
void flow_euler_cfg(const ModelFn& model_fn, float* x, size_t n, const std::vector<double>& timesteps, const std::vector<double>& sigmas,
                    double guidance);
std::vector<float> guidance_embedding(double w, int dim);

// ------------------------------------------------------------------ backends: load / allocate / infer / close

enum class DType { F32, I64 };

struct Buffer {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  size_t count() const;
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  int64_t* i64() { return reinterpret_cast<int64_t*>(bytes.data()); }
};

using Shapes = std::map<std::string, std::vector<int64_t>>;

struct Binding {
  std::map<std::string, Buffer> inputs, outputs;  // host buffers bound by address: write inputs, infer, read outputs
  std::shared_ptr<void> handle;                    // the backend's per-request state
};

class Backend {
 public:
  explicit Backend(int threads) : threads_(threads) {}
  virtual ~Backend() = default;
  virtual void load(const std::string& path) = 0;
  virtual Binding allocate(const Shapes& inputs, const Shapes& outputs) = 0;
  virtual void infer(Binding& binding) = 0;
  virtual void close() {}

 protected:
  int threads_;
};

// Registry: "openvino" (CPU). ONNX Runtime's C++ API is not built: no registry ships its headers (see README).
std::unique_ptr<Backend> create_backend(const std::string& name, int threads);

// ------------------------------------------------------------------ pipeline

struct Clip {
  int frames = 0, height = 0, width = 0;
  std::vector<uint8_t> rgb;  // [F, H, W, 3]
  bool truncated = false;
  int steps = 0;
  double session_seconds = 0.0;  // time inside Backend::infer
};

class Pipeline {
 public:
  static std::unique_ptr<Pipeline> from_bundle(const std::string& path, const std::string& backend = "openvino",
                                               const std::string& precision = "fp32", int threads = 1, bool verify = true,
                                               const std::string& decoder = "");  // "": the bundle's default decoder
  // Called after each sampling step with (steps done, steps in all); returning false cancels the call (throws Cancelled).
  using ProgressFn = std::function<bool(int done, int total)>;
  // steps <= 0: the bundle's default; guidance NaN: the bundle's; frames <= 0: the bundle's clip length, else one in its
  // profile (1 + tk for a causal autoencoder; a bundle exported for a range of lengths serves each of them).
  Clip generate(const std::string& prompt, int steps, uint64_t seed, double guidance, const ProgressFn& progress = nullptr, int frames = 0);
  const Bundle& bundle() const { return bundle_; }
  const std::string& decoder_name() const { return decoder_name_; }

 private:
  Bundle bundle_;
  std::string decoder_name_, decoder_component_, decoder_layout_;  // the chosen decoder; its session is "vae_decoder"
  ClipTokenizer tokenizer_;
  std::unique_ptr<UnigramTokenizer> unigram_;  // a T5 / UMT5 tokenizer (a DiT bundle), used instead of tokenizer_
  std::map<std::string, std::unique_ptr<Backend>> sessions_;
  std::map<std::string, Binding> bindings_;  // per component and shape set, reused across calls
  std::map<std::string, std::vector<float>> text_cache_;
  std::mutex mutex_;  // one generate at a time per Pipeline (bindings are shared)
  double session_seconds_ = 0.0;

  Binding& binding(const std::string& component, const Shapes& inputs, const Shapes& outputs);
  void infer(const std::string& component, Binding& b);
  std::vector<float> encode(const std::string& prompt, bool* truncated);
  void check_prompt(const std::string& prompt) const;
  int64_t latent_frames(int frames) const;  // checked against the bundle's clip lengths, as pipeline.py latent_shape
  std::string frame_range() const;          // "5 to 13 frames" for a bundle with a range of clip lengths, else ""
  void decode_steps(const std::vector<float>& x, int64_t C, int64_t F, int64_t h, int64_t w, int64_t H, int64_t W, Clip& clip);
};

}  // namespace turbo_edge
