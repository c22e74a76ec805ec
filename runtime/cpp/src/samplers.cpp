// The samplers of turbo_edge/runtime/samplers.py, operation for operation (float64 scalars, float32 arrays,
// the same order of in-place updates), so both runtimes round identically.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "runtime.hpp"

namespace turbo_edge {
namespace {

struct Linear { double x0_x, x0_o, eps_x, eps_o; };

// spec/param.py to_x0_eps evaluated on the basis (x=1, out=0) and (x=0, out=1), as samplers.linear_x0_eps does.
Linear linear_x0_eps(const std::string& prediction_type, double a, double s) {
  auto eval = [&](double x, double o, double* x0, double* eps) {
    if (prediction_type == "epsilon") { *x0 = (x - s * o) / a; *eps = o; }
    else if (prediction_type == "v_prediction") { *x0 = a * x - s * o; *eps = s * x + a * o; }
    else if (prediction_type == "sample") { *x0 = o; *eps = (x - a * o) / s; }
    else if (prediction_type == "flow_prediction") { *x0 = x - s * o; *eps = x + a * o; }
    else throw std::runtime_error("unknown prediction_type " + prediction_type);
  };
  Linear l{};
  eval(1.0, 0.0, &l.x0_x, &l.eps_x);
  eval(0.0, 1.0, &l.x0_o, &l.eps_o);
  return l;
}

double abar_at(const SamplerSpec& spec, int t, double final_value) { return t >= 0 ? spec.alphas_cumprod.at(static_cast<size_t>(t)) : final_value; }

// runtime/samplers.py alpha_sigma_at: sqrt(abar) / sqrt(1 - abar), or on a flow schedule sigma = shift((t + 1) / N), alpha = 1 - sigma.
void alpha_sigma(const SamplerSpec& spec, int t, double* alpha, double* sigma) {
  if (spec.flow_shift <= 0.0) {
    double abar = abar_at(spec, t, 1.0);
    *alpha = std::sqrt(abar);
    *sigma = std::sqrt(1.0 - abar);
    return;
  }
  double s = static_cast<double>(t + 1) / spec.num_train_timesteps;
  *sigma = spec.flow_shift * s / (1.0 + (spec.flow_shift - 1.0) * s);
  *alpha = 1.0 - *sigma;
}

}  // namespace

std::vector<float> guidance_embedding(double w, int dim) {
  int half = dim / 2;
  std::vector<float> emb(static_cast<size_t>(dim), 0.0f);
  // spec/param.py guidance_embedding: exp(-log(10000) * k / (half - 1)), times w * 1000.
  for (int k = 0; k < half; ++k) {
    double arg = (w * 1000.0) * std::exp(-std::log(10000.0) * static_cast<double>(k) / (half - 1));
    emb[static_cast<size_t>(k)] = static_cast<float>(std::sin(arg));
    emb[static_cast<size_t>(half + k)] = static_cast<float>(std::cos(arg));
  }
  return emb;
}

void ddim_cfg(const ModelFn& model_fn, float* x, size_t n, const std::vector<int>& timesteps, const SamplerSpec& spec, double guidance) {
  std::vector<float> guided(n);
  const int gap = spec.num_train_timesteps / static_cast<int>(timesteps.size());
  const float g = static_cast<float>(guidance);
  for (int t : timesteps) {
    const float* out = model_fn(x, t);
    // 1. Guidance: uncond + w * (cond - uncond).
    for (size_t i = 0; i < n; ++i) { guided[i] = out[n + i] - out[i]; guided[i] *= g; guided[i] += out[i]; }
    // 2. x0 and eps at abar_t; 3. DDIM update to abar_prev, folded into x <- A x + B guided.
    double abar_t = abar_at(spec, t, 1.0), abar_prev = abar_at(spec, t - gap, spec.final_alpha_cumprod);
    Linear l = linear_x0_eps(spec.prediction_type, std::sqrt(abar_t), std::sqrt(1.0 - abar_t));
    double a_prev = std::sqrt(abar_prev), s_prev = std::sqrt(1.0 - abar_prev);
    const float A = static_cast<float>(a_prev * l.x0_x + s_prev * l.eps_x);
    const float B = static_cast<float>(a_prev * l.x0_o + s_prev * l.eps_o);
    for (size_t i = 0; i < n; ++i) { x[i] *= A; guided[i] *= B; x[i] += guided[i]; }
  }
}

void flow_euler_cfg(const ModelFn& model_fn, float* x, size_t n, const std::vector<double>& timesteps, const std::vector<double>& sigmas,
                    double guidance) {
  // runtime/samplers.py flow_euler_cfg: x += (sigma_next - sigma) * (uncond + w (cond - uncond)), the step in float32.
  if (sigmas.size() != timesteps.size() + 1) throw std::runtime_error("flow Euler needs one more sigma than timesteps");
  std::vector<float> guided(n);
  const float g = static_cast<float>(guidance);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    const float* out = model_fn(x, timesteps[k]);
    const float dt = static_cast<float>(sigmas[k + 1]) - static_cast<float>(sigmas[k]);
    for (size_t i = 0; i < n; ++i) { guided[i] = out[n + i] - out[i]; guided[i] *= g; guided[i] += out[i]; guided[i] *= dt; x[i] += guided[i]; }
  }
}

void consistency(const ModelFn& model_fn, float* x, size_t n, const std::vector<int>& timesteps, const SamplerSpec& spec,
                 const NoiseFn& noise_fn) {
  std::vector<float> noise(n);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    const int t = timesteps[k];
    double alpha_t = 0, sigma_t = 0;
    alpha_sigma(spec, t, &alpha_t, &sigma_t);
    // A flow student's network takes sigma_t * N (float32); a DDPM one its integer timestep.
    const float* out = model_fn(x, spec.flow_shift > 0.0 ? static_cast<double>(static_cast<float>(sigma_t * spec.num_train_timesteps)) : t);
    Linear l = linear_x0_eps(spec.prediction_type, alpha_t, sigma_t);
    // 1. Boundary scalings (spec/param.py boundary_scalings): denoised = c_skip x_t + c_out x0_pred.
    double ts = static_cast<double>(t) * spec.timestep_scaling, sd2 = spec.sigma_data * spec.sigma_data;
    double c_skip = sd2 / (ts * ts + sd2), c_out = ts / std::sqrt(ts * ts + sd2);
    const float B = static_cast<float>(c_out * l.x0_o), A = static_cast<float>(c_skip + c_out * l.x0_x);
    for (size_t i = 0; i < n; ++i) { float scratch = out[i] * B; x[i] *= A; x[i] += scratch; }
    if (k + 1 == timesteps.size()) break;
    // 2. Re-noise to the next timestep with fresh noise of step k + 1.
    double alpha_next = 0, sigma_next = 0;
    alpha_sigma(spec, timesteps[k + 1], &alpha_next, &sigma_next);
    noise_fn(static_cast<int>(k + 1), noise.data());
    const float a = static_cast<float>(alpha_next), s = static_cast<float>(sigma_next);
    for (size_t i = 0; i < n; ++i) { x[i] *= a; float scratch = noise[i] * s; x[i] += scratch; }
  }
}

}  // namespace turbo_edge
