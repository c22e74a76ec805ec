#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <thread>
#include <tuple>

#include "core.hpp"
#include "runtime.hpp"

namespace turbo_edge {
namespace {

std::string key_of(const std::string& component, const Shapes& inputs) {
  std::ostringstream k;
  k << component;
  for (const auto& [name, shape] : inputs) {
    k << '|' << name;
    for (int64_t d : shape) k << ',' << d;
  }
  return k.str();
}

}  // namespace

std::unique_ptr<Pipeline> Pipeline::from_bundle(const std::string& path, const std::string& backend, const std::string& precision, int threads,
                                                bool verify, const std::string& decoder) {
  auto p = std::unique_ptr<Pipeline>(new Pipeline());
  p->bundle_ = Bundle::load(path, verify);
  std::tie(p->decoder_component_, p->decoder_layout_) = p->bundle_.decoder(decoder);
  p->decoder_name_ = decoder.empty() ? p->bundle_.decoder_names().front() : decoder;
  if (UnigramTokenizer::model_type(path + "/tokenizer") == "Unigram")  // a DiT's T5 / UMT5 tokenizer (spec/unigram.py load_tokenizer)
    p->unigram_ = std::make_unique<UnigramTokenizer>(UnigramTokenizer::from_file(path + "/tokenizer/tokenizer.json", p->bundle_.text_length));
  else
    p->tokenizer_ = ClipTokenizer::from_dir(path + "/tokenizer", p->bundle_.text_length);
  std::vector<std::string> names{"text_encoder", "unet", "vae_decoder"};
  if (p->decoder_layout_ == "steps") names.push_back(kFirstStep);  // the causal decoder's first-latent-frame graph
  for (const std::string& name : names) {
    auto session = create_backend(backend, threads);
    const std::string graph = name == "vae_decoder" ? p->decoder_component_ : name;
    session->load(p->bundle_.model_path(graph, precision));
    p->sessions_[name] = std::move(session);
  }
  return p;
}

Binding& Pipeline::binding(const std::string& component, const Shapes& inputs, const Shapes& outputs) {
  std::string key = key_of(component, inputs);
  auto it = bindings_.find(key);
  if (it == bindings_.end()) it = bindings_.emplace(key, sessions_.at(component)->allocate(inputs, outputs)).first;
  return it->second;
}

void Pipeline::infer(const std::string& component, Binding& b) {
  auto start = std::chrono::steady_clock::now();
  sessions_.at(component)->infer(b);
  session_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

long long thread_cap() { return 4LL * std::max(1u, std::thread::hardware_concurrency()); }

void check_seed(unsigned long long seed, const std::string& shown) {
  if (seed >= (1ULL << 63)) throw InputError("seed must be an integer in [0, 2**63), got " + shown);
}

void check_guidance(double guidance, const std::string& shown) {
  if (!std::isfinite(guidance)) throw InputError("guidance must be a finite number, got " + shown);
  if (guidance < 0.0 || guidance > 100.0) throw InputError("guidance must be in [0, 100], got " + shown);
}

void check_threads(long long threads, const std::string& shown) {
  const long long cap = thread_cap();
  if (threads < 1 || threads > cap)
    throw InputError("threads must be an integer in [1, " + std::to_string(cap) + "] (4x this machine's cores), got " + shown);
}

namespace {
// spec/inputs.py MAX_WORD_CHARS, MAX_WORDS_SHOWN, MAX_VOCAB_SHOWN and quote_word.
constexpr size_t kMaxWordChars = 40, kMaxWordsShown = 8, kMaxVocabShown = 30;

std::string quote_word(const std::string& word) {
  size_t total = 0;
  for (size_t i = 0; i < word.size(); i += utf8_length(static_cast<unsigned char>(word[i]))) ++total;
  std::string out = "'";
  size_t chars = 0;
  for (size_t i = 0; i < word.size(); ++chars) {
    if (total > kMaxWordChars && chars == kMaxWordChars - 4) { out += "\xe2\x80\xa6"; break; }  // U+2026
    unsigned char c = static_cast<unsigned char>(word[i]);
    size_t n = std::min(utf8_length(c), word.size() - i);
    unsigned cp = n == 2 ? ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(word[i + 1]) & 0x3Fu) : c;
    if ((n == 1 && (c < 0x20 || c == 0x7F)) || (n == 2 && cp >= 0x80 && cp <= 0x9F)) {  // Unicode category Cc
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", cp);
      out += buf;
    } else {
      out += word.substr(i, n);
    }
    i += n;
  }
  return out + "'";
}

// spec/inputs.py shown(): a quoted value cut to 60 characters, its first 55, an ellipsis and its last 4.
std::string shown(const std::string& text) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < text.size(); i += utf8_length(static_cast<unsigned char>(text[i]))) starts.push_back(i);
  if (starts.size() <= 60) return text;
  return text.substr(0, starts[55]) + "\xe2\x80\xa6" + text.substr(starts[starts.size() - 4]);
}

// Decoded frames into the clip's [P, H, W, 3] uint8 at pixel frames at..at+count, from [count, 3, H, W] (per-frame and
// whole-clip variant decoders) or, channel_major, [3, count, H, W] (causal video decoders). The Python runtime's
// rounding: clamp to [-1, 1], (v + 1) * 127.5 in float32, round half to even.
void store_frames(const float* src, bool channel_major, int64_t count, int64_t at, int64_t H, int64_t W, std::vector<uint8_t>& rgb) {
  for (int64_t f = 0; f < count; ++f)
    for (int64_t c = 0; c < 3; ++c) {
      const float* plane = src + (channel_major ? c * count + f : f * 3 + c) * H * W;
      uint8_t* dst = rgb.data() + (at + f) * H * W * 3 + c;
      for (int64_t p = 0; p < H * W; ++p)
        dst[p * 3] = static_cast<uint8_t>(std::nearbyint((std::min(1.0f, std::max(-1.0f, plane[p])) + 1.0f) * 127.5f));
    }
}
}  // namespace

void Pipeline::check_prompt(const std::string& prompt) const {
  // spec/inputs.py check_prompt_text: at most 2000 characters (code points, as Python's len counts them).
  size_t chars = 0;
  for (unsigned char c : prompt) chars += (c & 0xC0) != 0x80;
  if (chars > 2000) throw InputError("prompt is " + std::to_string(chars) + " characters, over the limit of 2000: " + shown("'" + prompt + "'"));
  if (ClipTokenizer::normalize(prompt).empty()) throw InputError("empty prompt: describe the video, e.g. 'a red circle moving left'");
  if (bundle_.closed_vocabulary.empty()) return;
  // spec/inputs.py check_closed_vocabulary: the user's words (not their byte-level form), each once, in order.
  const auto& vocab = bundle_.closed_vocabulary;
  std::vector<std::string> unknown;
  for (const std::string& w : ClipTokenizer::words(prompt)) {
    if (std::find(vocab.begin(), vocab.end(), ClipTokenizer::byte_level(w)) == vocab.end() && std::find(unknown.begin(), unknown.end(), w) == unknown.end())
      unknown.push_back(w);
  }
  if (unknown.empty()) return;
  std::string named;
  for (size_t i = 0; i < unknown.size() && i < kMaxWordsShown; ++i) named += (i ? ", " : "") + quote_word(unknown[i]);
  if (unknown.size() > kMaxWordsShown) named += " and " + std::to_string(unknown.size() - kMaxWordsShown) + " more";
  std::string known;
  for (size_t i = 0; i < vocab.size() && i < kMaxVocabShown; ++i) known += (i ? ", " : "") + vocab[i];
  if (vocab.size() > kMaxVocabShown) known += ", ... (" + std::to_string(vocab.size()) + " in all)";
  throw InputError("prompt uses words this model was never trained on: " + named + "; use only: " + known);
}

std::vector<float> Pipeline::encode(const std::string& prompt, bool* truncated) {
  Encoding enc = unigram_ ? unigram_->encode(prompt) : tokenizer_.encode(prompt);
  if (truncated) *truncated = enc.truncated;
  auto cached = text_cache_.find(prompt);
  if (cached != text_cache_.end()) return cached->second;
  const int64_t L = bundle_.text_length, D = bundle_.text_hidden;
  Shapes inputs = {{"input_ids", {1, L}}};
  if (!enc.mask.empty()) inputs["attention_mask"] = {1, L};  // UMT5 takes its mask
  Binding& b = binding("text_encoder", inputs, {{"last_hidden_state", {1, L, D}}});
  std::copy(enc.ids.begin(), enc.ids.end(), b.inputs["input_ids"].i64());
  if (!enc.mask.empty()) std::copy(enc.mask.begin(), enc.mask.end(), b.inputs["attention_mask"].i64());
  infer("text_encoder", b);
  const float* out = b.outputs["last_hidden_state"].f32();
  std::vector<float> hidden(out, out + L * D);
  if (text_cache_.size() >= 64) text_cache_.clear();  // bounded; prompts repeat in a host far less than in a server
  text_cache_[prompt] = hidden;
  return hidden;
}

std::string Pipeline::frame_range() const {
  const long long lo = bundle_.profile_min("unet", "sample", 2, 0), hi = bundle_.profile_max("unet", "sample", 2, 0);
  if (lo == hi) return "";
  auto pixels = [&](long long f) { return bundle_.causal_first_frame ? 1 + bundle_.temporal_factor * (f - 1) : bundle_.temporal_factor * f; };
  return std::to_string(pixels(lo)) + " to " + std::to_string(pixels(hi)) + " frames";
}

// pipeline.py latent_frames and latent_shape's checks on the clip length, with the same messages.
int64_t Pipeline::latent_frames(int frames) const {
  auto profile_at_point = [&](const std::string& point, size_t axis) {
    return point == "min" ? bundle_.profile_min("unet", "sample", axis, 0) : point == "max" ? bundle_.profile_max("unet", "sample", axis, 0)
           : axis == 1 ? bundle_.latent_channels : axis == 3 ? bundle_.latent_height : bundle_.latent_width;
  };
  if (frames <= 0) return bundle_.latent_frames;
  const int t = bundle_.temporal_factor;
  int64_t f = t > 1 ? frames / t : frames;
  if (bundle_.causal_first_frame) {
    if (frames < 1 || (frames - 1) % t) {
      const std::string range = frame_range();
      throw InputError("this bundle's causal autoencoder takes 1 + " + std::to_string(t) + "k frames" + (range.empty() ? "" : " (" + range + " in this bundle)") +
                       ", got " + std::to_string(frames));
    }
    f = (frames - 1) / t + 1;
  }
  const long long lo = bundle_.profile_min("unet", "sample", 2, f), hi = bundle_.profile_max("unet", "sample", 2, f);
  if (bundle_.causal_first_frame && lo != hi && (f < lo || f > hi))  // a DiT bundle with a range of clip lengths
    throw InputError("frames " + std::to_string(frames) + " is outside this bundle's clip lengths, " + frame_range() +
                     "; choose one of them or re-export with a wider --min-frames / --max-frames");
  if (f < lo || f > hi) {  // outside the profile (a bundle of one clip length, a UNet bundle's frames axis)
    auto dims = [&](const std::string& point, int64_t frames_dim) {
      std::string out = "(";
      for (size_t i = 1; i < 5; ++i) {
        const long long d = i == 2 && frames_dim >= 0 ? frames_dim : profile_at_point(point, i);
        out += (i > 1 ? ", " : "") + std::to_string(d);
      }
      return out + ")";
    };
    throw InputError("frames/height/width " + std::to_string(frames) + "/" + std::to_string(bundle_.height) + "/" + std::to_string(bundle_.width) +
                     " (latent " + dims("opt", f) + ") are outside the bundle's profile (latent min " + dims("min", -1) + ", max " +
                     dims("max", -1) + "); choose a size inside it or re-export with a wider profile");
  }
  return f;
}

Clip Pipeline::generate(const std::string& prompt, int steps, uint64_t seed, double guidance, const ProgressFn& progress, int frames) {
  std::lock_guard<std::mutex> lock(mutex_);
  const SamplerSpec& spec = bundle_.sampler;
  check_prompt(prompt);
  if (steps <= 0) steps = spec.default_steps;
  if (!spec.timesteps.count(steps)) {
    std::string have;
    for (const auto& kv : spec.timesteps) have += " " + std::to_string(kv.first);
    throw InputError("steps=" + std::to_string(steps) + " is not supported by this bundle; use one of:" + have);
  }
  if (!std::isnan(guidance) && !spec.uses_cfg && spec.w_embedding_dim == 0)
    throw InputError("this bundle's student has its guidance distilled in (no guidance input); omit guidance");
  if (std::isnan(guidance)) guidance = spec.guidance;
  const int64_t F = latent_frames(frames);
  session_seconds_ = 0.0;
  Clip clip;
  clip.steps = steps;

  // Text: conditional (and the empty prompt for classifier-free guidance), encoded once and cached.
  std::vector<float> cond = encode(prompt, &clip.truncated);
  const int64_t rows = spec.uses_cfg ? 2 : 1, C = bundle_.latent_channels, h = bundle_.latent_height,
                w = bundle_.latent_width, L = bundle_.text_length, D = bundle_.text_hidden;
  const size_t n = static_cast<size_t>(C * F * h * w);
  Shapes inputs = {{"sample", {rows, C, F, h, w}}, {"timestep", {rows}}, {"encoder_hidden_states", {rows, L, D}}};
  if (spec.w_embedding_dim > 0) inputs["timestep_cond"] = {rows, spec.w_embedding_dim};
  Binding& ub = binding("unet", inputs, {{"out_sample", {rows, C, F, h, w}}});
  float* ehs = ub.inputs["encoder_hidden_states"].f32();
  if (spec.uses_cfg) {
    std::vector<float> uncond = encode("", nullptr);
    std::copy(uncond.begin(), uncond.end(), ehs);
    std::copy(cond.begin(), cond.end(), ehs + L * D);
  } else {
    std::copy(cond.begin(), cond.end(), ehs);
  }
  if (spec.w_embedding_dim > 0) {
    std::vector<float> emb = guidance_embedding(guidance, spec.w_embedding_dim);
    for (int64_t r = 0; r < rows; ++r) std::copy(emb.begin(), emb.end(), ub.inputs["timestep_cond"].f32() + r * spec.w_embedding_dim);
  }
  float* sample = ub.inputs["sample"].f32();
  float* timestep = ub.inputs["timestep"].f32();
  const float* out = ub.outputs["out_sample"].f32();
  // Progress: the k-th network call starts once k steps are done; the samplers stay pure (no callback inside).
  const int total = static_cast<int>(spec.timesteps.at(steps).size());
  int calls = 0;
  auto report = [&](int done) {
    if (progress && !progress(done, total))
      throw Cancelled("generation cancelled by the progress callback after step " + std::to_string(done) + " of " + std::to_string(total));
  };
  ModelFn model_fn = [&](const float* x, double t) {
    if (calls > 0) report(calls);
    ++calls;
    for (int64_t r = 0; r < rows; ++r) std::copy(x, x + n, sample + r * static_cast<int64_t>(n));
    std::fill(timestep, timestep + rows, static_cast<float>(t));
    infer("unet", ub);
    return out;
  };
  NoiseFn noise_fn = [&](int step, float* dst) { normal(seed, stream_id(0, static_cast<uint64_t>(step)), dst, n); };

  // Sampling, from the prompt's initial noise (stream_id(0, 0), the first prompt of a batch in Python).
  std::vector<float> x(n);
  noise_fn(0, x.data());
  const std::vector<int>& ts = spec.timesteps.at(steps);
  if (spec.kind == "flow_euler_cfg") flow_euler_cfg(model_fn, x.data(), n, spec.flow_timesteps.at(steps), spec.sigmas.at(steps), guidance);
  else if (spec.kind == "ddim_cfg") ddim_cfg(model_fn, x.data(), n, ts, spec, guidance);
  else consistency(model_fn, x.data(), n, ts, spec, noise_fn);
  report(total);

  const int64_t factor = bundle_.height / bundle_.latent_height, H = h * factor, W = w * factor;
  // Pixel frames of the clip: F latent frames for a per-frame autoencoder, 1 + t (F - 1) for a causal one (every
  // decoder of a bundle gives the same count: spec/bundle.py's decoder layouts).
  const int64_t P = bundle_.causal_first_frame ? 1 + bundle_.temporal_factor * (F - 1) : bundle_.temporal_factor * F;
  clip.frames = static_cast<int>(P);
  clip.height = static_cast<int>(H);
  clip.width = static_cast<int>(W);
  clip.rgb.resize(static_cast<size_t>(P * H * W * 3));
  if (decoder_layout_ == "clip") {
    // A decoder variant (tiny, pruned): the whole clip in one call, latent [1, C, F, h, w] -> image [1, P, 3, H, W].
    Binding& vb = binding("vae_decoder", {{"latent", {1, C, F, h, w}}}, {{"image", {1, P, 3, H, W}}});
    std::copy(x.begin(), x.end(), vb.inputs["latent"].f32());
    infer("vae_decoder", vb);
    store_frames(vb.outputs["image"].f32(), false, P, 0, H, W, clip.rgb);
  } else if (decoder_layout_ == "steps") {
    decode_steps(x, C, F, h, w, H, W, clip);
  } else if (decoder_layout_ == "video" || bundle_.clip_decoder) {  // a whole-clip causal decoder (export/dit.py): [1, C, f, h, w] -> [1, 3, P, H, W]
    Binding& vb = binding("vae_decoder", {{"latent", {1, C, F, h, w}}}, {{"video", {1, 3, P, H, W}}});
    std::copy(x.begin(), x.end(), vb.inputs["latent"].f32());
    infer("vae_decoder", vb);
    store_frames(vb.outputs["video"].f32(), true, P, 0, H, W, clip.rgb);
  } else {  // the per-frame autoencoder: latent frames in chunks of the profile's batch, [m, C, h, w] -> [m, 3, H, W]
    const int64_t chunk = std::min<int64_t>(F, bundle_.profile_max("vae_decoder", "latent", 0, F));
    for (int64_t f0 = 0; f0 < F; f0 += chunk) {
      const int64_t m = std::min(chunk, F - f0);
      Binding& vb = binding("vae_decoder", {{"latent", {m, C, h, w}}}, {{"image", {m, 3, H, W}}});
      float* lat = vb.inputs["latent"].f32();
      for (int64_t j = 0; j < m; ++j)
        for (int64_t c = 0; c < C; ++c)
          std::copy(x.data() + ((c * F + f0 + j) * h * w), x.data() + ((c * F + f0 + j + 1) * h * w), lat + (j * C + c) * h * w);
      infer("vae_decoder", vb);
      store_frames(vb.outputs["image"].f32(), false, m, f0, H, W, clip.rgb);
    }
  }
  clip.session_seconds = session_seconds_;
  return clip;
}

// The "steps" layout (pipeline.py _decode_steps): latent frame 0 through vae_decoder_first (one pixel frame), then each
// later one through vae_decoder (t pixel frames), each call fed the cache the call before returned (next_cache_i ->
// cache_i); the cache shapes are the profile's opt shapes scaled to this latent size.
void Pipeline::decode_steps(const std::vector<float>& x, int64_t C, int64_t F, int64_t h, int64_t w, int64_t H, int64_t W, Clip& clip) {
  const Json& opt = bundle_.manifest["components"]["vae_decoder"]["profile"]["opt"];
  const int64_t lh = opt["latent"][3].integer(), lw = opt["latent"][4].integer(), t = bundle_.temporal_factor;
  Shapes caches, next;
  for (const auto& [name, shape] : opt.object()) {
    if (name == "latent") continue;
    caches[name] = {1, shape[1].integer(), shape[2].integer(), h * (shape[3].integer() / lh), w * (shape[4].integer() / lw)};
    next["next_" + name] = caches[name];
  }
  Shapes first_out = next, step_out = next, step_in = caches;
  first_out["video"] = {1, 3, 1, H, W};
  step_out["video"] = {1, 3, t, H, W};
  step_in["latent"] = {1, C, 1, h, w};
  Binding& first = binding(kFirstStep, {{"latent", {1, C, 1, h, w}}}, first_out);
  Binding& step = binding("vae_decoder", step_in, step_out);
  auto frame_of = [&](int64_t k, float* dst) {  // latent frame k of [C, F, h, w] -> [1, C, 1, h, w]
    for (int64_t c = 0; c < C; ++c) std::copy(x.data() + (c * F + k) * h * w, x.data() + (c * F + k + 1) * h * w, dst + c * h * w);
  };
  frame_of(0, first.inputs["latent"].f32());
  infer(kFirstStep, first);
  store_frames(first.outputs["video"].f32(), true, 1, 0, H, W, clip.rgb);  // [1, 3, 1, H, W]: pixel frame 0
  Binding* carried = &first;
  for (int64_t k = 1; k < F; ++k) {
    frame_of(k, step.inputs["latent"].f32());
    for (auto& [name, buf] : step.inputs) {
      if (name == "latent") continue;
      const Buffer& src = carried->outputs.at("next_" + name);
      std::copy(src.bytes.begin(), src.bytes.end(), buf.bytes.begin());
    }
    infer("vae_decoder", step);
    store_frames(step.outputs["video"].f32(), true, t, 1 + t * (k - 1), H, W, clip.rgb);  // [1, 3, t, H, W]
    carried = &step;
  }
}

}  // namespace turbo_edge
