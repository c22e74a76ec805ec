// Example host: generate a clip from a bundle and write it as a PPM sequence (+ raw RGB), or run one of the
// probes the tests compare against the Python runtime (noise values, tokenizer ids, sha256).
//
//   turbo_edge_generate --bundle B --prompt "a red circle moving left" [--steps 4] [--seed 0] [--guidance G]
//                       [--precision fp32|int8] [--decoder NAME] [--frames N] [--threads 1] [--no-verify] [--repeat N] --out DIR [--overwrite]
//   --decoder: one of the bundle's decoders (full, tiny, ...: the manifest's "decoders"); default: the bundle's default.
//   --frames: the clip length, one the bundle serves (a bundle exported with --min-frames / --max-frames: each 1 + tk
//   between them); default: the bundle's own.
//   --out DIR must be new or empty; --overwrite replaces frames this host wrote there before, and only when every file
//   in DIR is on the record it left (.turbo-edge-output.json: a run id and the files), so a user's file is never lost.
//   turbo_edge_generate noise SEED STREAM COUNT
//   turbo_edge_generate tokenize TOKENIZER_DIR MAX_LENGTH TEXT   (a Unigram tokenizer also prints its mask)
//   turbo_edge_generate tokenize-lines TOKENIZER_DIR MAX_LENGTH FILE   (FILE: one JSON string a line, each encoded as above)
//   turbo_edge_generate graphemes FILE   (FILE: one JSON string a line; prints the byte length of each extended grapheme cluster)
//   turbo_edge_generate sha256 FILE
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core.hpp"
#include "grapheme.hpp"
#include "json.hpp"
#include "runtime.hpp"

using namespace turbo_edge;

namespace {

long peak_rss_kb() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

const char* const kRecord = ".turbo-edge-output.json";  // spec/outputs.py RECORD: the same rule as every Python writer

std::vector<std::string> frame_files(int frames) {
  std::vector<std::string> names{"frames.rgb"};
  for (int f = 0; f < frames; ++f) {
    char name[32];
    std::snprintf(name, sizeof(name), "frame_%03d.ppm", f);
    names.emplace_back(name);
  }
  return names;
}

// Refuse, before anything loads, an --out that holds a file this host did not record writing there; an --out holding
// only its own earlier frames needs --overwrite.
// Returns the files of the earlier run to remove before writing.
std::set<std::string> check_out(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::error_code ec;
  auto st = fs::symlink_status(root, ec);
  if (ec || !fs::exists(st)) return {};
  if (fs::is_symlink(st) || !fs::is_directory(st))
    throw InputError("--out " + dir + " is an existing file; the host writes its frames into a new or empty folder: choose another --out");
  std::set<std::string> owned;
  bool recorded = false;
  try {
    Json r = Json::parse_file((root / kRecord).string());
    if (r.type() == Json::Type::Object && r.has("format") && r["format"].type() == Json::Type::String &&
        r["format"].str() == "turbo-edge-output" && r.has("run_id") && r["run_id"].type() == Json::Type::String &&
        r.has("files") && r["files"].type() == Json::Type::Array) {
      for (const Json& f : r["files"].array())
        if (f.type() == Json::Type::String) owned.insert(f.str());
      recorded = true;
    }
  } catch (const std::exception&) {
  }
  std::vector<std::string> foreign;
  std::set<std::string> present;  // owned files found by walking DIR: only these are ever removed
  bool any = false;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory() && !it->is_symlink()) continue;
    any = true;
    std::string rel = fs::relative(it->path(), root).generic_string();
    if (recorded && (rel == kRecord || owned.count(rel))) {
      if (rel != kRecord) present.insert(rel);
      continue;
    }
    foreign.push_back(rel);
    if (foreign.size() == 3) break;
  }
  if (!foreign.empty()) {
    std::string names;
    for (const auto& f : foreign) names += (names.empty() ? "" : ", ") + f;
    throw InputError("--out " + dir + " holds files this host did not write (" + names +
                     "); choose a new or empty --out: the host replaces only its own frames, never a user's file");
  }
  if (any && !overwrite)
    throw InputError("--out " + dir + " already holds frames this host wrote; pass --overwrite to replace them, or choose another --out");
  return present;
}

void write_frames(const Clip& clip, const std::string& dir, const std::set<std::string>& earlier) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  // The record first: a run cut short leaves frames a later --overwrite may still replace.
  std::random_device rd;
  char run_id[64];
  std::snprintf(run_id, sizeof(run_id), "%lld-%d-%08x", static_cast<long long>(std::time(nullptr)), static_cast<int>(getpid()), rd());
  auto names = frame_files(clip.frames);
  for (const auto& name : earlier) fs::remove(fs::path(dir) / name);  // the earlier run's, on its record (check_out)
  for (const auto& name : names) fs::remove(fs::path(dir) / name);  // never write through a link
  {
    std::ofstream rec(fs::path(dir) / kRecord, std::ios::trunc);
    rec << "{\"format\": \"turbo-edge-output\", \"kind\": \"frames (turbo_edge_generate)\", \"run_id\": \"" << run_id << "\", \"files\": [";
    for (size_t i = 0; i < names.size(); ++i) rec << (i ? ", " : "") << "\"" << names[i] << "\"";
    rec << "]}\n";
    if (!rec) throw std::runtime_error("cannot write " + (fs::path(dir) / kRecord).string() + "; check the disk and --out's permissions");
  }
  const size_t frame_bytes = static_cast<size_t>(clip.height) * clip.width * 3;
  std::ofstream raw(dir + "/frames.rgb", std::ios::binary);
  raw.write(reinterpret_cast<const char*>(clip.rgb.data()), static_cast<std::streamsize>(clip.rgb.size()));
  for (int f = 0; f < clip.frames; ++f) {
    std::ofstream ppm(fs::path(dir) / names[f + 1], std::ios::binary);
    ppm << "P6\n" << clip.width << " " << clip.height << "\n255\n";
    ppm.write(reinterpret_cast<const char*>(clip.rgb.data() + f * frame_bytes), static_cast<std::streamsize>(frame_bytes));
    if (!ppm) throw std::runtime_error("cannot write " + (fs::path(dir) / names[f + 1]).string() + "; check the disk and --out's permissions");
  }
  if (!raw) throw std::runtime_error("cannot write " + dir + "/frames.rgb; check the disk and --out's permissions");
}

// The input rules of spec/inputs.py, with the same messages: a flag's value is checked whole before anything loads.
long long parse_integer(const std::string& flag, const std::string& text, long long lo, long long hi, const std::string& rule) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < lo || v > hi) throw InputError(flag.substr(2) + " must be " + rule + ", got '" + text + "'");
  return v;
}

unsigned long long parse_seed(const std::string& text) {
  size_t used = 0;
  unsigned long long v = 0;
  bool ok = !text.empty() && text[0] != '-' && text[0] != '+';
  try {
    if (ok) v = std::stoull(text, &used);
  } catch (const std::exception&) {
    ok = false;
  }
  check_seed(ok && used == text.size() ? v : ~0ULL, "'" + text + "'");  // text that is no integer gets the rule's message too
  return v;
}

double parse_guidance(const std::string& text) {
  size_t used = 0;
  double v = std::nan("");
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  check_guidance(used != 0 && used == text.size() ? v : std::nan(""), "'" + text + "'");
  return v;
}

int generate(int argc, char** argv) {
  std::string bundle, prompt, out, precision = "fp32", decoder;
  int steps = 0, threads = 1, repeat = 1, frames = 0;
  unsigned long long seed = 0;
  double guidance = std::nan("");
  bool verify = true, overwrite = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError("flag " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--bundle") bundle = next();
    else if (a == "--prompt") prompt = next();
    else if (a == "--out") out = next();
    else if (a == "--precision") precision = next();
    else if (a == "--decoder") decoder = next();
    else if (a == "--steps") steps = static_cast<int>(parse_integer(a, next(), 1, 1000, "an integer in [1, 1000]"));
    else if (a == "--seed") seed = parse_seed(next());
    else if (a == "--frames") frames = static_cast<int>(parse_integer(a, next(), 1, 100000, "an integer in [1, 100000]"));
    else if (a == "--guidance") guidance = parse_guidance(next());
    else if (a == "--threads") {
      long long cap = thread_cap();
      threads = static_cast<int>(parse_integer(a, next(), 1, cap, "an integer in [1, " + std::to_string(cap) + "] (4x this machine's cores)"));
    } else if (a == "--repeat") repeat = static_cast<int>(parse_integer(a, next(), 1, 100000, "an integer in [1, 100000]"));
    else if (a == "--no-verify") verify = false;
    else if (a == "--overwrite") overwrite = true;
    else throw InputError("unknown flag " + a + " (see the usage at the top of turbo_edge_generate.cpp)");
  }
  if (bundle.empty() || out.empty()) throw InputError("--bundle and --out are required");
  const std::set<std::string> earlier = check_out(out, overwrite);  // before the bundle loads
  auto t0 = std::chrono::steady_clock::now();
  if (!verify)  // spec/errors.py UNVERIFIED
    std::cerr << "turbo_edge_generate: warning: --no-verify: the bundle's files are not hash-checked, so a changed or tampered "
                 "graph runs as it is; run `turbo-edge verify` on it, or drop --no-verify\n";
  auto pipe = Pipeline::from_bundle(bundle, "openvino", precision, threads, verify, decoder);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Clip clip;
  std::vector<double> e2e, session;
  for (int r = 0; r < repeat + (repeat > 1 ? 1 : 0); ++r) {  // with --repeat, one extra warm-up call first
    auto s = std::chrono::steady_clock::now();
    clip = pipe->generate(prompt, steps, seed, guidance, nullptr, frames);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
    if (repeat > 1 && r == 0) continue;
    e2e.push_back(dt);
    session.push_back(clip.session_seconds);
  }
  write_frames(clip, out, earlier);
  std::sort(e2e.begin(), e2e.end());
  std::sort(session.begin(), session.end());
  if (clip.truncated) std::cerr << "warning: the prompt is longer than the text encoder's tokens; its tail was dropped\n";
  std::printf("{\"frames\": %d, \"height\": %d, \"width\": %d, \"steps\": %d, \"truncated\": %s, \"load_seconds\": %.6f, "
              "\"median_seconds\": %.6f, \"median_session_seconds\": %.6f, \"calls\": %zu, \"peak_rss_kb\": %ld, \"decoder\": \"%s\"}\n",
              clip.frames, clip.height, clip.width, clip.steps, clip.truncated ? "true" : "false", load_s, e2e[e2e.size() / 2],
              session[session.size() / 2], e2e.size(), peak_rss_kb(), pipe->decoder_name().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "noise" && argc == 5) {
      auto v = normal(std::stoull(argv[2]), std::stoull(argv[3]), std::stoull(argv[4]));
      for (float x : v) std::printf("%.9g\n", x);
      return 0;
    }
    if ((cmd == "tokenize" || cmd == "tokenize-lines") && argc == 5) {
      const bool unigram = UnigramTokenizer::model_type(argv[2]) == "Unigram";  // a T5 / UMT5 tokenizer: ids, status, then the mask
      std::unique_ptr<UnigramTokenizer> t5;
      std::unique_ptr<ClipTokenizer> clip;
      if (unigram) t5 = std::make_unique<UnigramTokenizer>(UnigramTokenizer::from_file(std::string(argv[2]) + "/tokenizer.json", std::stoi(argv[3])));
      else clip = std::make_unique<ClipTokenizer>(ClipTokenizer::from_dir(argv[2], std::stoi(argv[3])));
      std::vector<std::string> texts{argv[4]};
      if (cmd == "tokenize-lines") {  // TEXT names a file of JSON strings, one a line: the prompts, encoded in turn
        texts.clear();
        std::ifstream in(argv[4]);
        for (std::string line; std::getline(in, line);) texts.push_back(Json::parse(line).str());
      }
      for (const std::string& text : texts) {
        Encoding e = t5 ? t5->encode(text) : clip->encode(text);
        for (long long id : e.ids) std::printf("%lld ", id);
        std::printf("\n%s\n", e.truncated ? "truncated" : "complete");
        for (long long m : e.mask) std::printf("%lld ", m);
        if (!e.mask.empty()) std::printf("\n");
      }
      return 0;
    }
    if (cmd == "graphemes" && argc == 3) {  // the byte lengths of each line's extended grapheme clusters
      std::ifstream in(argv[2]);
      for (std::string line; std::getline(in, line);) {
        const std::string text = Json::parse(line).str();
        if (!valid_utf8(text)) throw std::runtime_error(std::string(argv[2]) + ": a line is not valid UTF-8");
        for (size_t pos = 0, end = 0; pos < text.size(); pos = end) std::printf("%zu ", (end = grapheme_end(text, pos)) - pos);
        std::printf("\n");
      }
      return 0;
    }
    if (cmd == "sha256" && argc == 3) {
      std::printf("%s\n", sha256_file(argv[2]).c_str());
      return 0;
    }
    return generate(argc, argv);
  } catch (const std::exception& e) {
    std::string what = e.what();  // one line, whatever the library wrote (OpenVINO's messages span several)
    for (char& c : what)
      if (c == '\n' || c == '\r') c = ' ';
    std::fprintf(stderr, "error: %s\n", what.c_str());
    return 2;
  }
}
