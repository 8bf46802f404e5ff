// The fuzz driver every target in tests/fuzz links with: it feeds the target's
// LLVMFuzzerTestOneInput (the libFuzzer entry point, so a target also builds with clang's
// -fsanitize=fuzzer unchanged) first every seed of its corpus as it is, then mutations of them.
//
//   vigil_fuzz_NAME [--runs N] [--seconds S] [--seed N] [--max-len N] [--timeout S]
//                   [--dict FILE] [--artifacts DIR] [--quiet] CORPUS...   (files or directories)
//
// Bounded by both --runs (default 20000 mutations) and --seconds (default 10), whichever comes
// first; the same seed gives the same inputs, so a failure in ctest reruns as it was.
// Mutations: bit flips, interesting bytes, inserted, deleted, duplicated and spliced ranges,
// and tokens from the target's dictionary (one token per line; \n, \t, \\ and \xHH escapes;
// lines starting with # are comments), 1 to 6 of them stacked on one input.
//
// Guided when the code under test is built with -fsanitize-coverage=trace-pc (the sanitized
// build of `make fuzz`, docs/fuzzing.md): GCC then calls __sanitizer_cov_trace_pc() on every
// basic block, this driver notes each caller's address in a 64 Ki-entry map, and an input that
// reaches an address no earlier input reached joins the pool that mutations start from. In the
// plain build nothing calls it, and the pool stays the seeds (blind mutation).
//
// An input that crashes (signal, uncaught exception, sanitizer report) or runs longer than
// --timeout seconds is written to --artifacts (default: the working directory) as
// crash-<hash> or timeout-<hash> before the process dies, and its path printed: rerun with
// `vigil_fuzz_NAME that-file`. Exit status: 0 done; 2 bad arguments or no seed; an input that
// broke the target ends the process by the signal (SIGABRT for a failed check, an uncaught
// exception or a timeout), or by the sanitizer's exit status.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" __attribute__((weak)) void __sanitizer_set_death_callback(void (*callback)());

namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kMapSize = 1 << 16;
uint8_t g_map[kMapSize];  // addresses reached by the current input (hashed)
bool g_guided = false;    // set once any instrumented code ran

// The current input, kept where a signal handler can write it out.
const uint8_t* g_input = nullptr;
size_t g_input_size = 0;
char g_artifacts[512] = ".";
volatile sig_atomic_t g_dumped = 0;

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

// Async-signal-safe: writes the current input as PREFIX-<hash> and says where on stderr.
void dump_input(const char* prefix) {
  if (g_dumped || !g_input) return;
  g_dumped = 1;
  char path[640];
  uint64_t h = fnv1a(g_input, g_input_size);
  char hex[17];
  for (int i = 15; i >= 0; --i, h >>= 4) hex[i] = "0123456789abcdef"[h & 15];
  hex[16] = 0;
  size_t n = 0;
  const char* parts[] = {g_artifacts, "/", prefix, "-", hex};
  for (const char* s : parts)
    for (; *s && n + 1 < sizeof path; ++s) path[n++] = *s;
  path[n] = 0;
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    size_t off = 0;
    while (off < g_input_size) {
      const ssize_t w = write(fd, g_input + off, g_input_size - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    close(fd);
  }
  const char* msg = "vigil fuzz: input written to ";
  (void)!write(2, msg, strlen(msg));
  (void)!write(2, path, n);
  (void)!write(2, "\n", 1);
}

void on_crash_signal(int sig) {
  dump_input(sig == SIGALRM ? "timeout" : "crash");
  if (sig == SIGALRM) {
    const char* msg = "vigil fuzz: an input ran past --timeout\n";
    (void)!write(2, msg, strlen(msg));
    sig = SIGABRT;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void on_sanitizer_death() { dump_input("crash"); }

void on_terminate() {
  const char* what = "unknown";
  std::string text;
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      text = ex.what();
      what = text.c_str();
    } catch (...) {
    }
  }
  std::fprintf(stderr, "vigil fuzz: uncaught exception: %s\n", what);
  dump_input("crash");
  signal(SIGABRT, SIG_DFL);
  std::abort();
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "vigil fuzz: %s\nusage: vigil_fuzz_NAME [--runs N] [--seconds S] [--seed N] [--max-len N] "
               "[--timeout S] [--dict FILE] [--artifacts DIR] [--quiet] CORPUS...\n",
               why);
  std::exit(2);
}

bool read_file(const std::string& path, Bytes& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// Seeds: files as given, directories' regular files (not recursive), in name order.
void collect(const std::string& path, std::vector<std::string>& files) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) usage(("no such corpus: " + path).c_str());
  if (!S_ISDIR(st.st_mode)) {
    files.push_back(path);
    return;
  }
  std::vector<std::string> names;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string full = path + "/" + e->d_name;
      struct stat fst {};
      if (e->d_name[0] != '.' && stat(full.c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) names.push_back(full);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  files.insert(files.end(), names.begin(), names.end());
}

// A dictionary line with \n, \t, \\ and \xHH escapes.
Bytes unescape(const std::string& line) {
  Bytes out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\' || i + 1 == line.size()) {
      out.push_back(static_cast<uint8_t>(line[i]));
      continue;
    }
    const char c = line[++i];
    if (c == 'n') out.push_back('\n');
    else if (c == 't') out.push_back('\t');
    else if (c == 'x' && i + 2 < line.size()) {
      out.push_back(static_cast<uint8_t>(std::strtoul(line.substr(i + 1, 2).c_str(), nullptr, 16)));
      i += 2;
    } else out.push_back(static_cast<uint8_t>(c));
  }
  return out;
}

struct Mutator {
  std::mt19937_64 rng;
  const std::vector<Bytes>* pool = nullptr;
  std::vector<Bytes> dict;
  size_t max_len = 4096;

  size_t below(size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; }

  void once(Bytes& b) {
    static const uint8_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, '\n', '\r', '\t', ' ', '"', '\'', '\\', '{', '}',
                                           '[', ']', ':', ',', '-', '#', '&', '*', '!', '|', '>', '%', '0', '9', '.'};
    switch (below(dict.empty() ? 8 : 10)) {
      case 0:  // flip a bit
        if (!b.empty()) b[below(b.size())] ^= static_cast<uint8_t>(1u << below(8));
        break;
      case 1:  // an interesting byte in place
        if (!b.empty()) b[below(b.size())] = kInteresting[below(sizeof kInteresting)];
        break;
      case 2: {  // insert one to eight bytes, random or interesting
        const size_t at = below(b.size() + 1), n = 1 + below(8);
        Bytes ins(n);
        for (auto& c : ins) c = below(2) ? kInteresting[below(sizeof kInteresting)] : static_cast<uint8_t>(rng());
        b.insert(b.begin() + static_cast<long>(at), ins.begin(), ins.end());
        break;
      }
      case 3:  // delete a range
        if (!b.empty()) {
          const size_t at = below(b.size()), n = 1 + below(std::min<size_t>(b.size() - at, 32));
          b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
        }
        break;
      case 4:  // duplicate a range elsewhere
        if (!b.empty()) {
          const size_t from = below(b.size()), n = 1 + below(std::min<size_t>(b.size() - from, 64));
          const Bytes chunk(b.begin() + static_cast<long>(from), b.begin() + static_cast<long>(from + n));
          const size_t to = below(b.size() + 1);
          b.insert(b.begin() + static_cast<long>(to), chunk.begin(), chunk.end());
        }
        break;
      case 5:  // truncate
        if (!b.empty()) b.resize(below(b.size()));
        break;
      case 6: {  // splice: our head, another input's tail
        const Bytes& other = (*pool)[below(pool->size())];
        if (!other.empty()) {
          const size_t cut = below(b.size() + 1), from = below(other.size());
          b.resize(cut);
          b.insert(b.end(), other.begin() + static_cast<long>(from), other.end());
        }
        break;
      }
      case 7:  // a digit run: numbers at their edges
        if (!b.empty()) {
          static const char* kNumbers[] = {"0", "-1", "4294967296", "18446744073709551616", "1e308", "-0", "nan",
                                           "inf", "0x10", "9999999999999999999999", "1.5", ".5"};
          const char* s = kNumbers[below(sizeof kNumbers / sizeof *kNumbers)];
          const size_t at = below(b.size() + 1);
          b.insert(b.begin() + static_cast<long>(at), s, s + std::strlen(s));
        }
        break;
      default: {  // a dictionary token, inserted or overwriting
        const Bytes& t = dict[below(dict.size())];
        const size_t at = below(b.size() + 1);
        if (below(2) || at + t.size() > b.size()) b.insert(b.begin() + static_cast<long>(at), t.begin(), t.end());
        else std::copy(t.begin(), t.end(), b.begin() + static_cast<long>(at));
        break;
      }
    }
    if (b.size() > max_len) b.resize(max_len);
  }

  Bytes mutate(const Bytes& parent) {
    Bytes b = parent;
    const size_t n = 1 + below(6);
    for (size_t i = 0; i < n; ++i) once(b);
    return b;
  }
};

void run_one(const Bytes& input) {
  g_input = input.data();
  g_input_size = input.size();
  // A copy the target cannot read past unnoticed (under ASan) and cannot keep a pointer into.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[input.size() ? input.size() : 1]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
  LLVMFuzzerTestOneInput(copy.get(), input.size());
}

}  // namespace

extern "C" void __sanitizer_cov_trace_pc() {
  const auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  g_map[(pc ^ (pc >> 16)) & (kMapSize - 1)] = 1;
  g_guided = true;
}

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  uint64_t runs = 20000, seed = 1;
  double seconds = 10;
  unsigned timeout = 10;
  size_t max_len = 4096;
  bool quiet = false;
  std::string dict_path;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(d >= 0)) usage((a + ": not a number: " + v).c_str());
      return d;
    };
    if (a == "--runs") runs = static_cast<uint64_t>(number(next()));
    else if (a == "--seconds") seconds = number(next());
    else if (a == "--seed") seed = static_cast<uint64_t>(number(next()));
    else if (a == "--max-len") max_len = static_cast<size_t>(number(next()));
    else if (a == "--timeout") timeout = static_cast<unsigned>(number(next()));
    else if (a == "--dict") dict_path = next();
    else if (a == "--artifacts") std::snprintf(g_artifacts, sizeof g_artifacts, "%s", next().c_str());
    else if (a == "--quiet") quiet = true;
    else if (a.rfind("--", 0) == 0) usage(("unknown option " + a).c_str());
    else collect(a, corpus);
  }
  if (corpus.empty()) usage("no seed: name a corpus file or directory");

  std::set_terminate(on_terminate);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM}) signal(sig, on_crash_signal);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_sanitizer_death);

  Mutator m;
  m.rng.seed(seed);
  m.max_len = max_len;
  if (!dict_path.empty()) {
    std::ifstream in(dict_path);
    if (!in) usage(("cannot read dictionary " + dict_path).c_str());
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] != '#') m.dict.push_back(unescape(line));
  }

  std::vector<Bytes> pool;
  for (const auto& f : corpus) {
    Bytes b;
    if (!read_file(f, b)) usage(("cannot read " + f).c_str());
    alarm(timeout);
    run_one(b);
    pool.push_back(std::move(b));
  }
  alarm(0);
  const size_t seeds = pool.size();
  std::vector<uint8_t> seen(kMapSize, 0);
  auto merge_new = [&]() {
    bool fresh = false;
    for (size_t i = 0; i < kMapSize; ++i)
      if (g_map[i] && !seen[i]) seen[i] = 1, fresh = true;
    std::memset(g_map, 0, kMapSize);
    return fresh;
  };
  merge_new();  // what the seeds reach

  m.pool = &pool;
  const auto start = std::chrono::steady_clock::now();
  uint64_t done = 0;
  for (; done < runs; ++done) {
    if ((done & 63) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= seconds)
      break;
    Bytes input = m.mutate(pool[m.below(pool.size())]);
    alarm(timeout);
    run_one(input);
    if (g_guided && merge_new() && pool.size() < 20000) pool.push_back(std::move(input));
  }
  alarm(0);
  g_input = nullptr;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!quiet) {
    size_t covered = 0;
    for (uint8_t s : seen) covered += s;
    std::printf("vigil fuzz: %zu seeds, %llu mutations in %.1f s (seed %llu), %s\n", seeds,
                static_cast<unsigned long long>(done), took, static_cast<unsigned long long>(seed),
                g_guided ? ("guided: " + std::to_string(covered) + " addresses, pool " + std::to_string(pool.size())).c_str()
                         : "blind (no coverage instrumentation)");
  }
  return 0;
}
