// turbo-edge C++ API: a header-only RAII wrapper over the C API (turbo_edge.h), so the library's ABI stays C.
//
//   turbo_edge::Session session("bundles/student");                 // throws turbo_edge::Error
//   turbo_edge::GenerateOptions options;
//   options.seed = 3;
//   turbo_edge::Clip clip = session.generate("a red circle moving left", options);
//   const uint8_t* rgb = clip.data();                               // [frames, height, width, 3]
//
// Threads: as turbo_edge.h says, one Session may be used from several threads (calls run one at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "turbo_edge/turbo_edge.h"

namespace turbo_edge {

// A failed call: code() is the C API's status (TE_ERR_*), what() its te_last_error message.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

class Clip {
 public:
  explicit Clip(te_clip* clip) : clip_(clip) {}
  int frames() const { return te_clip_frames(clip_.get()); }
  int height() const { return te_clip_height(clip_.get()); }
  int width() const { return te_clip_width(clip_.get()); }
  int steps() const { return te_clip_steps(clip_.get()); }
  bool truncated() const { return te_clip_truncated(clip_.get()) != 0; }
  const uint8_t* data() const { return te_clip_data(clip_.get()); }  // uint8 RGB [frames, height, width, 3]
  size_t size() const { return te_clip_size(clip_.get()); }
  std::vector<uint8_t> rgb() const { return std::vector<uint8_t>(data(), data() + size()); }

 private:
  struct Free {
    void operator()(te_clip* c) const { te_clip_free(c); }
  };
  std::unique_ptr<te_clip, Free> clip_;
};

struct GenerateOptions {
  int steps = 0;                  // 0: the bundle's default
  std::optional<double> guidance;  // empty: the bundle's
  uint64_t seed = 0;
  int frames = 0;                 // the clip length: 0, the bundle's; else one it serves (a range bundle: 1 + 4k in its range)
  // After each step (done, total); return false to cancel (Error with TE_ERR_CANCELLED). An exception it throws
  // cancels the call and is rethrown from generate().
  std::function<bool(int done, int total)> progress;
};

class Session {
 public:
  // decoder: one of the bundle's decoders ("full", "tiny", ...); "" is the bundle's default.
  explicit Session(const std::string& bundle, const std::string& precision = "fp32", int threads = 1, bool verify = true,
                   const std::string& decoder = "") {
    te_pipeline_params params = te_pipeline_default_params();
    params.bundle = bundle.c_str();
    params.precision = precision.c_str();
    params.threads = threads;
    params.verify = verify ? 1 : 0;
    params.decoder = decoder.empty() ? nullptr : decoder.c_str();
    open(params);
  }
  explicit Session(const te_pipeline_params& params) { open(params); }

  Clip generate(const std::string& prompt, const GenerateOptions& options = {}) {
    Call call(options);
    te_clip* out = nullptr;
    call.check(te_generate(pipeline_.get(), prompt.c_str(), &call.params, &out), pipeline_.get());
    return Clip(out);
  }

  // Clip i is the clip generate(prompts[i], options) gives.
  std::vector<Clip> generate_batch(const std::vector<std::string>& prompts, const GenerateOptions& options = {}) {
    std::vector<const char*> texts;
    for (const std::string& p : prompts) texts.push_back(p.c_str());
    std::vector<te_clip*> outs(prompts.size(), nullptr);
    Call call(options);
    call.check(te_generate_batch(pipeline_.get(), texts.data(), texts.size(), &call.params, outs.data()), pipeline_.get());
    std::vector<Clip> clips;
    for (te_clip* c : outs) clips.emplace_back(c);
    return clips;
  }

  te_pipeline* handle() const { return pipeline_.get(); }

 private:
  struct Close {
    void operator()(te_pipeline* p) const { te_pipeline_close(p); }
  };
  std::unique_ptr<te_pipeline, Close> pipeline_;

  void open(const te_pipeline_params& params) {
    te_pipeline* p = nullptr;
    int status = te_pipeline_open(&params, &p);
    if (status != TE_OK) throw Error(status, te_last_error(nullptr));
    pipeline_.reset(p);
  }

  // One call's C params, with the progress std::function behind a C trampoline (no exception crosses into C).
  struct Call {
    te_generate_params params = te_generate_default_params();
    const GenerateOptions& options;
    std::exception_ptr thrown;

    explicit Call(const GenerateOptions& o) : options(o) {
      params.steps = o.steps;
      params.seed = o.seed;
      params.frames = o.frames;
      if (o.guidance) {
        params.use_default_guidance = 0;
        params.guidance = *o.guidance;
      }
      if (o.progress) {
        params.progress = &Call::trampoline;
        params.user_data = this;
      }
    }
    static int trampoline(int done, int total, void* user) {
      auto* self = static_cast<Call*>(user);
      try {
        return self->options.progress(done, total) ? 0 : 1;
      } catch (...) {
        self->thrown = std::current_exception();
        return 1;
      }
    }
    void check(int status, const te_pipeline* p) const {
      if (thrown) std::rethrow_exception(thrown);
      if (status != TE_OK) throw Error(status, te_last_error(p));
    }
  };
};

// The loaded library's version ("MAJOR.MINOR.PATCH"); the header's is TE_VERSION_MAJOR/MINOR/PATCH.
inline std::string version() { return te_version(); }

}  // namespace turbo_edge
