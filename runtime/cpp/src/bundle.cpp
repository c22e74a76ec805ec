#include <filesystem>
#include <set>

#include "core.hpp"
#include "runtime.hpp"

namespace turbo_edge {
namespace fs = std::filesystem;

// The bundle's trust boundary, as spec/bundle.py member(): a manifest path must be a relative name that stays
// inside the bundle (no absolute path, no "..", no link leaving it), so no manifest makes this runtime open or
// hash a file elsewhere on the machine.
static fs::path member(const std::string& root, const std::string& rel, const std::string& what) {
  if (rel.empty() || rel.find('\0') != std::string::npos || rel.find('\\') != std::string::npos)
    throw BundleError("manifest.json: " + what + " path is not a relative file name; re-export the bundle");
  fs::path p(rel);
  bool dotdot = false;
  for (const auto& part : p) dotdot = dotdot || part == "..";
  if (p.is_absolute() || rel[0] == '/' || dotdot)
    throw BundleError("manifest.json: " + what + " path '" + rel + "' points outside the bundle; a bundle may only name its own files");
  std::error_code ec;
  fs::path base = fs::weakly_canonical(fs::path(root), ec);
  fs::path full = fs::weakly_canonical(fs::path(root) / p, ec);
  auto rel_to = full.lexically_relative(base);
  if (ec || rel_to.empty() || *rel_to.begin() == "..")
    throw BundleError("manifest.json: " + what + " '" + rel + "' is a link to a file outside the bundle; copy the file in and re-export");
  return fs::path(root) / p;
}

static Bundle load_manifest(const std::string& root, bool verify);

// spec/bundle.py read_manifest's checks and messages; a manifest whose values have the wrong JSON types is one
// line naming manifest.json, never the parser's bare "expected a object".
Bundle Bundle::load(const std::string& root, bool verify) {
  try {
    return load_manifest(root, verify);
  } catch (const BundleError&) {
    throw;
  } catch (const std::exception& e) {
    throw BundleError((fs::path(root) / "manifest.json").string() + ": " + e.what() + "; re-export the bundle");
  }
}

static Bundle load_manifest(const std::string& root, bool verify) {
  Bundle b;
  b.root = root;
  if (!fs::is_regular_file(fs::path(root) / "manifest.json"))
    throw BundleError(root + " is not a bundle (no manifest.json); create one with `turbo-edge export --model MODEL --out " + root + "`");
  try {
    b.manifest = Json::parse_file((fs::path(root) / "manifest.json").string());
  } catch (const std::exception& e) {
    throw BundleError((fs::path(root) / "manifest.json").string() + " is not valid JSON (" + e.what() + "); re-export the bundle");
  }
  const Json& m = b.manifest;
  const std::string file = (fs::path(root) / "manifest.json").string();
  static const char* const types[] = {"null", "bool", "number", "string", "list", "object"};
  if (m.type() != Json::Type::Object)
    throw BundleError(file + " is a JSON " + types[static_cast<int>(m.type())] + ", not an object; re-export the bundle");
  // spec/bundle.py SCHEMA_VERSIONS: 1, and 2 for a bundle whose full decoder is the causal step graphs ("steps").
  if (!m.has("schema_version") || m["schema_version"].type() != Json::Type::Number ||
      (m["schema_version"].number() != 1 && m["schema_version"].number() != 2))
    throw BundleError(file + ": schema_version is not supported (this build reads 1 and 2); re-export or upgrade turbo-edge");
  if ((m.has("components") && m["components"].type() != Json::Type::Object) || (m.has("files") && m["files"].type() != Json::Type::Object))
    throw BundleError(file + ": components and files must be JSON objects; re-export the bundle");
  std::string missing;
  for (const char* key : {"schema_version", "sampler", "latent", "video", "text", "components", "files"})
    if (!m.has(key)) missing += std::string(missing.empty() ? "" : ", ") + "'" + key + "'";
  if (!missing.empty()) throw BundleError(file + " lacks [" + missing + "]; re-export the bundle");
  std::set<std::string> listed{"manifest.json"};
  for (const auto& [rel, digest] : m["files"].object()) {
    member(root, rel, "file");
    listed.insert(rel);
  }
  for (const auto& [name, entry] : m["components"].object())
    for (const auto& [precision, rel] : entry["files"].object()) {
      if (rel.is_null()) continue;
      member(root, rel.str(), "component " + name + " " + precision);
      if (!listed.count(rel.str()))
        throw BundleError("manifest.json: component " + name + " " + precision + " file '" + rel.str() + "' is not in the hashed file list; re-export the bundle");
    }
  if (verify) {
    for (const auto& [rel, digest] : m["files"].object()) {
      fs::path p = fs::path(root) / rel;
      if (!fs::is_regular_file(p)) throw BundleError("bundle file " + rel + " is missing from " + root + "; re-export the bundle or copy it again whole");
      if (sha256_file(p.string()) != digest.str())
        throw BundleError("bundle file " + rel + " in " + root + " was changed after export (its sha256 differs from the manifest's); "
                          "re-export the bundle, or restore the original file");
    }
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (!entry.is_regular_file()) continue;
      std::string rel = fs::relative(entry.path(), root).generic_string();
      if (!listed.count(rel)) throw BundleError("bundle " + root + " holds files not in its manifest: " + rel + "; remove it or re-export the bundle");
    }
  }
  const Json& s = m["sampler"];
  SamplerSpec& sp = b.sampler;
  sp.kind = s["kind"].str();
  if (sp.kind != "ddim_cfg" && sp.kind != "consistency" && sp.kind != "flow_euler_cfg")
    throw BundleError("sampler kind " + sp.kind + " is not one this runtime runs");
  sp.prediction_type = s["prediction_type"].str();
  sp.num_train_timesteps = static_cast<int>(s["num_train_timesteps"].integer());
  sp.flow_shift = s.has("flow_shift") && !s["flow_shift"].is_null() ? s["flow_shift"].number() : 0.0;
  if (s.has("flow_shift") && !s["flow_shift"].is_null() && !(sp.flow_shift > 0.0))
    throw BundleError(file + ": the sampler contract's flow_shift must be a positive number; re-export the bundle");
  if (sp.kind == "flow_euler_cfg") {  // spec/sampler.py: float timesteps (sigma * N) and steps + 1 sigmas per step count
    for (const auto& [k, v] : s["timesteps"].object())
      for (const Json& t : v.array()) sp.flow_timesteps[std::stoi(k)].push_back(t.number());
    for (const auto& [k, v] : s["sigmas"].object())
      for (const Json& t : v.array()) sp.sigmas[std::stoi(k)].push_back(t.number());
    for (const auto& [k, v] : sp.flow_timesteps) {
      if (!sp.sigmas.count(k) || sp.sigmas.at(k).size() != v.size() + 1) throw BundleError(file + ": the flow contract's sigmas do not fit its timesteps; re-export the bundle");
      sp.timesteps[k] = std::vector<int>(v.size(), 0);  // the step counts it supports (the values are flow_timesteps')
    }
  } else if (sp.flow_shift == 0.0 && (!s.has("alphas_cumprod") || s["alphas_cumprod"].is_null()))
    throw BundleError(file + ": the sampler contract carries no noise schedule (alphas_cumprod); re-export the bundle");
  if (sp.flow_shift == 0.0)
    for (const Json& a : s["alphas_cumprod"].array()) sp.alphas_cumprod.push_back(a.number());
  sp.final_alpha_cumprod = s.has("final_alpha_cumprod") ? s["final_alpha_cumprod"].number() : 1.0;
  sp.default_steps = static_cast<int>(s["default_steps"].integer());
  for (const auto& [k, v] : s["timesteps"].object()) {
    if (sp.kind == "flow_euler_cfg") break;
    std::vector<int> ts;
    for (const Json& t : v.array()) ts.push_back(static_cast<int>(t.integer()));
    sp.timesteps[std::stoi(k)] = ts;
  }
  sp.guidance = s["guidance"].number();
  sp.uses_cfg = s["uses_cfg"].boolean();
  sp.w_embedding_dim = s.has("w_embedding_dim") && !s["w_embedding_dim"].is_null() ? static_cast<int>(s["w_embedding_dim"].integer()) : 0;
  sp.timestep_scaling = s.has("timestep_scaling") ? s["timestep_scaling"].number() : 10.0;
  sp.sigma_data = s.has("sigma_data") ? s["sigma_data"].number() : 0.5;
  const Json& lat = m["latent"];
  b.latent_channels = static_cast<int>(lat["channels"].integer());
  b.latent_frames = static_cast<int>(lat["frames"].integer());
  b.latent_height = static_cast<int>(lat["height"].integer());
  b.latent_width = static_cast<int>(lat["width"].integer());
  b.frames = static_cast<int>(m["video"]["frames"].integer());
  b.height = static_cast<int>(m["video"]["height"].integer());
  b.width = static_cast<int>(m["video"]["width"].integer());
  if (m["video"].has("lead_in_frames")) {  // spec/bundle.py check_geometry: frames before the prompt's content
    const Json& lead = m["video"]["lead_in_frames"];
    if (lead.type() != Json::Type::Number || lead.number() != static_cast<double>(lead.integer()) || lead.integer() < 0 || lead.integer() >= b.frames)
      throw BundleError(file + ": video.lead_in_frames must be an integer from 0 to video.frames - 1; re-export the bundle");
  }
  b.text_length = static_cast<int>(m["text"]["max_length"].integer());
  b.text_hidden = static_cast<int>(m["text"]["hidden_size"].integer());
  b.temporal_factor = lat.has("temporal_factor") ? static_cast<int>(lat["temporal_factor"].integer()) : 1;
  b.causal_first_frame = lat.has("causal_first_frame") && lat["causal_first_frame"].boolean();
  const Json& comps = m["components"];
  const Json& dec = comps.has("vae_decoder") ? comps["vae_decoder"] : comps;
  b.clip_decoder = comps.has("vae_decoder") && dec.has("inputs") && dec["inputs"].size() > 0 && dec["inputs"][0]["shape"].size() == 5;
  if (m["text"].has("closed_vocabulary") && !m["text"]["closed_vocabulary"].is_null())
    for (const Json& w : m["text"]["closed_vocabulary"].array()) b.closed_vocabulary.push_back(w.str());
  b.decoder_names();  // the decoders section is checked at load, as the Python reader does
  return b;
}

namespace {
// spec/bundle.py full_decoder_layout: "video" for a whole-clip full decoder (a 5-D latent, export/dit.py), "steps" for its
// step graph (which also takes the cache), else "frames".
std::string full_decoder_layout(const Json& m) {
  const Json& comps = m["components"];
  if (!comps.has("vae_decoder")) return "frames";
  const Json& dec = comps["vae_decoder"];
  if (dec.has("inputs") && dec["inputs"].size() > 0 && dec["inputs"][0].has("shape") && dec["inputs"][0]["shape"].size() == 5)
    return dec["inputs"].size() > 1 ? "steps" : "video";
  return "frames";
}

// spec/bundle.py check_steps: a "steps" decoder is the full one, its first-step graph beside it, in a schema-2 manifest.
void check_steps(const Json& m, const std::string& name, const std::string& layout) {
  if (layout != "steps") return;
  if (name != "full" || !m["components"].has(kFirstStep) || m["schema_version"].number() != 2)
    throw BundleError("manifest.json: decoder '" + name + "' has the \"steps\" layout, which only the full decoder of a schema 2 bundle with a " +
                      std::string(kFirstStep) + " component has; re-export the bundle");
}

// spec/bundle.py bundle_decoders: {name: (component, layout)} and the default; a manifest without "decoders" has "full".
std::map<std::string, std::pair<std::string, std::string>> decoder_table(const Json& m, std::string* default_name) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  if (!m.has("decoders")) {
    *default_name = "full";
    out["full"] = {"vae_decoder", full_decoder_layout(m)};
    check_steps(m, "full", out["full"].second);
    return out;
  }
  const Json& d = m["decoders"];
  const std::string where = "manifest.json: decoders";
  if (d.type() != Json::Type::Object || !d.has("variants") || d["variants"].type() != Json::Type::Object || d["variants"].object().empty())
    throw BundleError(where + " must be an object with a non-empty variants object; re-export the bundle");
  for (const auto& [name, entry] : d["variants"].object()) {
    const std::string component = name == "full" ? "vae_decoder" : "vae_decoder_" + name;
    bool ok = !name.empty() && entry.type() == Json::Type::Object;
    for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) throw BundleError(where + ": variant '" + name + "' must be a lower-case name (a-z, 0-9, _) with an object; re-export the bundle");
    const bool named = entry.has("component") && entry["component"].type() == Json::Type::String && entry["component"].str() == component;
    const bool laid = entry.has("layout") && entry["layout"].type() == Json::Type::String &&
                      (entry["layout"].str() == "frames" || entry["layout"].str() == "clip" || entry["layout"].str() == "video" ||
                       entry["layout"].str() == "steps");
    if (!named || !laid)
      throw BundleError(where + ": variant '" + name + "' must name component '" + component +
                        "' and a layout in ['frames', 'clip', 'video', 'steps']; re-export the bundle");
    if (!m["components"].has(component))
      throw BundleError(where + ": variant '" + name + "' names component '" + component + "', which the bundle lacks; re-export the bundle");
    check_steps(m, name, entry["layout"].str());
    out[name] = {component, entry["layout"].str()};
  }
  if (!d.has("default") || d["default"].type() != Json::Type::String || !out.count(d["default"].str()))
    throw BundleError(where + ".default is not one of its variants; re-export the bundle");
  *default_name = d["default"].str();
  return out;
}
}  // namespace

std::vector<std::string> Bundle::decoder_names() const {
  std::string def;
  auto table = decoder_table(manifest, &def);
  std::vector<std::string> names{def};
  for (const auto& kv : table)
    if (kv.first != def) names.push_back(kv.first);
  return names;
}

std::pair<std::string, std::string> Bundle::decoder(const std::string& name) const {
  std::string def;
  auto table = decoder_table(manifest, &def);
  const std::string chosen = name.empty() ? def : name;
  auto it = table.find(chosen);
  if (it == table.end()) {
    std::string have, joined;
    for (const std::string& n : decoder_names()) {
      have += std::string(have.empty() ? "" : ", ") + "'" + n + "'";
      joined += n + ",";
    }
    throw BundleError("this bundle has no '" + chosen + "' decoder; it has [" + have + "] (export one with `turbo-edge export --decoder " + joined +
                      chosen + "` from a model directory that carries it)");
  }
  return it->second;
}

std::string Bundle::model_path(const std::string& component, const std::string& precision) const {
  const Json& files = manifest["components"][component]["files"];
  if (files.has(precision) && !files[precision].is_null()) return member(root, files[precision].str(), "component " + component).string();
  if (component == "unet" && precision != "fp32")
    throw BundleError("this bundle has no " + precision + " UNet; export it with `--precision " + precision + "` or use fp32");
  return member(root, files["fp32"].str(), "component " + component).string();
}

static long long profile_at(const Json& manifest, const std::string& component, const std::string& point, const std::string& input,
                            size_t axis, long long fallback) {
  const Json& c = manifest["components"][component];
  if (!c.has("profile") || !c["profile"].has(point) || !c["profile"][point].has(input)) return fallback;
  return c["profile"][point][input][axis].integer();
}

long long Bundle::profile_max(const std::string& component, const std::string& input, size_t axis, long long fallback) const {
  return profile_at(manifest, component, "max", input, axis, fallback);
}
long long Bundle::profile_min(const std::string& component, const std::string& input, size_t axis, long long fallback) const {
  return profile_at(manifest, component, "min", input, axis, fallback);
}

}  // namespace turbo_edge
