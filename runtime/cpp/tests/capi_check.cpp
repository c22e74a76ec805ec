// The C API's thread-safety contract and the C++ wrapper, checked over libturbo_edge.so:
//
//   turbo_edge_capi_check BUNDLE THREADS CALLS
//
// 1. CALLS generate calls (prompts and seeds varying) run serially on one Session, then again from THREADS threads
//    sharing that Session, then split across two Sessions in parallel: every clip must equal its serial one byte
//    for byte. 2. The wrapper: Error carries the C status, progress returning false cancels, and an exception
//    thrown by progress comes back out of generate(), and options.frames reaches the runtime (the bundle's own length
//    gives the same clip, one outside its profile TE_ERR_INPUT). Prints one line; exit 0 when all hold, 1 otherwise.
#include <atomic>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "turbo_edge/turbo_edge.hpp"

namespace {

const char* const PROMPTS[] = {"a red circle moving left", "a blue square moving right", "a green triangle moving up",
                               "a white diamond staying still"};

turbo_edge::Clip call(turbo_edge::Session& session, int i) {
  turbo_edge::GenerateOptions options;
  options.seed = static_cast<uint64_t>(i);
  return session.generate(PROMPTS[i % 4], options);
}

// Runs calls 0..n-1 on `threads` threads, call i on sessions[i % sessions.size()]; returns the clips by index.
std::vector<std::vector<uint8_t>> parallel(std::vector<turbo_edge::Session*> sessions, int threads, int n) {
  std::vector<std::vector<uint8_t>> clips(static_cast<size_t>(n));
  std::atomic<int> next{0};
  std::vector<std::string> errors(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (int i = next++; i < n; i = next++) clips[static_cast<size_t>(i)] = call(*sessions[static_cast<size_t>(i) % sessions.size()], i).rgb();
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(t)] = e.what();
      }
    });
  for (auto& th : pool) th.join();
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error("a thread failed: " + e);
  return clips;
}

int status_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const turbo_edge::Error& e) {
    return e.code();
  }
  return TE_OK;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: turbo_edge_capi_check BUNDLE THREADS CALLS\n");
    return 2;
  }
  try {
    const std::string bundle = argv[1];
    const int threads = std::stoi(argv[2]), n = std::stoi(argv[3]);
    turbo_edge::Session one(bundle), two(bundle);
    std::vector<std::vector<uint8_t>> serial;
    for (int i = 0; i < n; ++i) serial.push_back(call(one, i).rgb());
    if (serial[0] == serial[1]) throw std::runtime_error("calls 0 and 1 gave the same clip; the check needs distinct clips");
    if (parallel({&one}, threads, n) != serial) throw std::runtime_error("one session shared by threads gave clips that differ from serial calls");
    if (parallel({&one, &two}, threads, n) != serial) throw std::runtime_error("two sessions in parallel gave clips that differ from serial calls");

    turbo_edge::GenerateOptions stop;
    int reports = 0;
    stop.progress = [&](int done, int) { return ++reports, done < 1; };
    if (status_of([&] { one.generate(PROMPTS[0], stop); }) != TE_ERR_CANCELLED || reports != 1)
      throw std::runtime_error("progress returning false did not cancel at the first report");
    if (status_of([&] { one.generate("  "); }) != TE_ERR_INPUT) throw std::runtime_error("an empty prompt did not give TE_ERR_INPUT");
    if (status_of([] { turbo_edge::Session missing("/nonexistent/bundle"); }) != TE_ERR_BUNDLE)
      throw std::runtime_error("a missing bundle did not give TE_ERR_BUNDLE");
    turbo_edge::GenerateOptions throwing;
    throwing.progress = [](int, int) -> bool { throw std::logic_error("from progress"); };
    bool rethrown = false;
    try {
      one.generate(PROMPTS[0], throwing);
    } catch (const std::logic_error&) {
      rethrown = true;
    }
    if (!rethrown) throw std::runtime_error("an exception thrown by progress did not come back out of generate()");
    turbo_edge::GenerateOptions length;
    length.frames = call(one, 0).frames();
    if (one.generate(PROMPTS[0], length).rgb() != serial[0]) throw std::runtime_error("frames = the bundle's own length gave another clip");
    length.frames = 100000;
    if (status_of([&] { one.generate(PROMPTS[0], length); }) != TE_ERR_INPUT) throw std::runtime_error("frames outside the bundle's did not give TE_ERR_INPUT");
    if (call(one, 0).rgb() != serial[0]) throw std::runtime_error("the session gave a different clip after the failed calls");
    std::printf("ok: %d calls on %d threads equal serial calls; wrapper errors, cancel and rethrow hold (turbo_edge %s)\n", n, threads,
                turbo_edge::version().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
