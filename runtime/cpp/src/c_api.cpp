// The C ABI (include/turbo_edge/turbo_edge.h) over the C++ Pipeline: argument checks with the messages of
// spec/inputs.py, exceptions turned into status codes at this boundary, per-thread error messages.
#include "turbo_edge/turbo_edge.h"

#include <openvino/core/except.hpp>

#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime.hpp"

#define TE_STR2(x) #x
#define TE_STR(x) TE_STR2(x)

struct te_pipeline {
  std::unique_ptr<turbo_edge::Pipeline> pipeline;
  std::mutex errors_mutex;
  std::unordered_map<std::thread::id, std::string> errors;  // node-based: a message's buffer survives other threads' inserts
};

struct te_clip {
  turbo_edge::Clip clip;
};

namespace {

// A caller bug (NULL pointer, inconsistent params) rather than a bad request value.
struct InvalidArgument : std::runtime_error { using std::runtime_error::runtime_error; };

thread_local std::string t_error;  // te_last_error(NULL)

int fail(te_pipeline* p, int status, const std::string& message) {
  if (p == nullptr) {
    t_error = message;
  } else {
    std::lock_guard<std::mutex> lock(p->errors_mutex);
    p->errors[std::this_thread::get_id()] = message;
  }
  return status;
}

// OpenVINO's messages span lines (source locations first); keep one line, its own text.
std::string one_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line, joined;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("Exception from ", 0) == 0) continue;
    joined += (joined.empty() ? "" : " ") + line;
  }
  return joined.empty() ? text : joined;
}

// Runs body; every exception becomes a status code and the thread's message. `other` is the code of an
// unclassified std::exception (a malformed bundle while opening, a bug while generating).
template <class Body>
int guarded(te_pipeline* p, int other, Body&& body) {
  try {
    body();
    return TE_OK;
  } catch (const InvalidArgument& e) {
    return fail(p, TE_ERR_INVALID_ARGUMENT, e.what());
  } catch (const turbo_edge::Cancelled& e) {
    return fail(p, TE_ERR_CANCELLED, e.what());
  } catch (const turbo_edge::InputError& e) {
    return fail(p, TE_ERR_INPUT, e.what());
  } catch (const turbo_edge::BundleError& e) {
    return fail(p, TE_ERR_BUNDLE, e.what());
  } catch (const turbo_edge::BackendUnavailable& e) {
    return fail(p, TE_ERR_BACKEND, e.what());
  } catch (const ov::Exception& e) {
    return fail(p, TE_ERR_BACKEND, "OpenVINO: " + one_line(e.what()));
  } catch (const std::bad_alloc&) {
    return fail(p, TE_ERR_OUT_OF_MEMORY, "out of memory; close other pipelines or use a smaller bundle");
  } catch (const std::exception& e) {
    if (other == TE_ERR_BUNDLE) return fail(p, other, std::string(e.what()) + "; re-export the bundle");
    return fail(p, other, std::string(e.what()) + " (an internal error: please report it)");
  } catch (...) {
    return fail(p, TE_ERR_INTERNAL, "unknown exception (an internal error: please report it)");
  }
}

std::string shown(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// The request's values, checked as spec/inputs.py does; returns the guidance to pass (NaN: the bundle's).
double checked_guidance(const te_generate_params& gp) {
  if (gp.steps < 0) throw turbo_edge::InputError("steps must be 0 (the bundle's default) or one of the bundle's supported steps, got " + std::to_string(gp.steps));
  if (gp.frames < 0) throw turbo_edge::InputError("frames must be 0 (the bundle's default) or a clip length the bundle serves, got " + std::to_string(gp.frames));
  turbo_edge::check_seed(gp.seed, std::to_string(gp.seed));
  if (gp.use_default_guidance) {
    if (!std::isnan(gp.guidance))
      throw InvalidArgument("te_generate_params.guidance is set but use_default_guidance is nonzero; set use_default_guidance = 0 to use it");
    return std::nan("");
  }
  turbo_edge::check_guidance(gp.guidance, shown(gp.guidance));
  return gp.guidance;
}

turbo_edge::Clip run_one(te_pipeline* p, const char* prompt, const te_generate_params& gp, double guidance, int index, int count) {
  turbo_edge::Pipeline::ProgressFn progress;
  if (gp.progress != nullptr)
    progress = [&gp, index, count](int done, int total) { return gp.progress(index * total + done, count * total, gp.user_data) == 0; };
  return p->pipeline->generate(prompt, gp.steps, gp.seed, guidance, progress, gp.frames);
}

}  // namespace

extern "C" {

const char* te_version(void) { return TE_STR(TE_VERSION_MAJOR) "." TE_STR(TE_VERSION_MINOR) "." TE_STR(TE_VERSION_PATCH); }

const char* te_status_name(int status) {
  switch (status) {
    case TE_OK: return "TE_OK";
    case TE_ERR_INVALID_ARGUMENT: return "TE_ERR_INVALID_ARGUMENT";
    case TE_ERR_BUNDLE: return "TE_ERR_BUNDLE";
    case TE_ERR_INPUT: return "TE_ERR_INPUT";
    case TE_ERR_BACKEND: return "TE_ERR_BACKEND";
    case TE_ERR_CANCELLED: return "TE_ERR_CANCELLED";
    case TE_ERR_OUT_OF_MEMORY: return "TE_ERR_OUT_OF_MEMORY";
    case TE_ERR_INTERNAL: return "TE_ERR_INTERNAL";
    default: return "unknown";
  }
}

te_pipeline_params te_pipeline_default_params(void) { return te_pipeline_params{nullptr, "openvino", "fp32", 1, 1, nullptr}; }

int te_pipeline_open(const te_pipeline_params* params, te_pipeline** out) {
  if (out != nullptr) *out = nullptr;
  return guarded(nullptr, TE_ERR_BUNDLE, [&] {
    if (out == nullptr) throw InvalidArgument("te_pipeline_open: out is NULL; pass the address of a te_pipeline* to fill");
    if (params == nullptr) throw InvalidArgument("te_pipeline_open: params is NULL; pass te_pipeline_default_params() with .bundle set");
    if (params->bundle == nullptr || params->bundle[0] == '\0')
      throw InvalidArgument("te_pipeline_params.bundle is not set; set it to the bundle directory");
    if (params->backend == nullptr) throw InvalidArgument("te_pipeline_params.backend is NULL; use \"openvino\"");
    if (params->precision == nullptr) throw InvalidArgument("te_pipeline_params.precision is NULL; use \"fp32\" or \"int8\"");
    const std::string precision = params->precision;
    if (precision != "fp32" && precision != "fp16" && precision != "int8")
      throw turbo_edge::InputError("precision must be one of fp32, fp16, int8, got '" + precision + "'");
    turbo_edge::check_threads(params->threads, std::to_string(params->threads));
    auto p = std::make_unique<te_pipeline>();
    p->pipeline = turbo_edge::Pipeline::from_bundle(params->bundle, params->backend, precision, params->threads, params->verify != 0,
                                                    params->decoder != nullptr ? params->decoder : "");
    *out = p.release();
  });
}

void te_pipeline_close(te_pipeline* pipeline) { delete pipeline; }

te_generate_params te_generate_default_params(void) { return te_generate_params{0, 1, std::nan(""), 0, nullptr, nullptr, 0}; }

int te_generate(te_pipeline* pipeline, const char* prompt, const te_generate_params* params, te_clip** out) {
  if (out != nullptr) *out = nullptr;
  if (pipeline == nullptr) return fail(nullptr, TE_ERR_INVALID_ARGUMENT, "te_generate: pipeline is NULL; open one with te_pipeline_open");
  return guarded(pipeline, TE_ERR_INTERNAL, [&] {
    if (out == nullptr) throw InvalidArgument("te_generate: out is NULL; pass the address of a te_clip* to fill");
    if (prompt == nullptr) throw InvalidArgument("te_generate: prompt is NULL; pass the text of the video");
    const te_generate_params gp = params != nullptr ? *params : te_generate_default_params();
    const double guidance = checked_guidance(gp);
    auto clip = std::make_unique<te_clip>();
    clip->clip = run_one(pipeline, prompt, gp, guidance, 0, 1);
    *out = clip.release();
  });
}

int te_generate_batch(te_pipeline* pipeline, const char* const* prompts, size_t n, const te_generate_params* params, te_clip** outs) {
  if (outs != nullptr)
    for (size_t i = 0; i < n; ++i) outs[i] = nullptr;
  if (pipeline == nullptr) return fail(nullptr, TE_ERR_INVALID_ARGUMENT, "te_generate_batch: pipeline is NULL; open one with te_pipeline_open");
  std::vector<std::unique_ptr<te_clip>> clips;
  long failing = -1;  // the prompt being generated
  int status = guarded(pipeline, TE_ERR_INTERNAL, [&] {
    if (n == 0) throw turbo_edge::InputError("no prompts given (n is 0)");
    if (prompts == nullptr) throw InvalidArgument("te_generate_batch: prompts is NULL; pass an array of n prompts");
    if (outs == nullptr) throw InvalidArgument("te_generate_batch: outs is NULL; pass an array of n te_clip* to fill");
    for (size_t i = 0; i < n; ++i)
      if (prompts[i] == nullptr) throw InvalidArgument("te_generate_batch: prompts[" + std::to_string(i) + "] is NULL");
    const te_generate_params gp = params != nullptr ? *params : te_generate_default_params();
    const double guidance = checked_guidance(gp);
    for (size_t i = 0; i < n; ++i) {
      failing = static_cast<long>(i);
      auto clip = std::make_unique<te_clip>();
      clip->clip = run_one(pipeline, prompts[i], gp, guidance, static_cast<int>(i), static_cast<int>(n));
      clips.push_back(std::move(clip));
    }
  });
  if (status != TE_OK) {
    if (failing >= 0) {  // name the prompt that failed
      std::lock_guard<std::mutex> lock(pipeline->errors_mutex);
      std::string& message = pipeline->errors[std::this_thread::get_id()];
      message = "prompts[" + std::to_string(failing) + "]: " + message;
    }
    return status;  // the clips made so far are freed with `clips`
  }
  for (size_t i = 0; i < n; ++i) outs[i] = clips[i].release();
  return TE_OK;
}

int te_clip_frames(const te_clip* clip) { return clip != nullptr ? clip->clip.frames : 0; }
int te_clip_height(const te_clip* clip) { return clip != nullptr ? clip->clip.height : 0; }
int te_clip_width(const te_clip* clip) { return clip != nullptr ? clip->clip.width : 0; }
int te_clip_steps(const te_clip* clip) { return clip != nullptr ? clip->clip.steps : 0; }
int te_clip_truncated(const te_clip* clip) { return clip != nullptr && clip->clip.truncated ? 1 : 0; }
const uint8_t* te_clip_data(const te_clip* clip) { return clip != nullptr ? clip->clip.rgb.data() : nullptr; }
size_t te_clip_size(const te_clip* clip) { return clip != nullptr ? clip->clip.rgb.size() : 0; }
void te_clip_free(te_clip* clip) { delete clip; }

const char* te_last_error(const te_pipeline* pipeline) {
  if (pipeline == nullptr) return t_error.c_str();
  auto* p = const_cast<te_pipeline*>(pipeline);  // the message table is bookkeeping, not the pipeline's state
  std::lock_guard<std::mutex> lock(p->errors_mutex);
  auto it = p->errors.find(std::this_thread::get_id());
  return it != p->errors.end() ? it->second.c_str() : "";
}

}  // extern "C"
