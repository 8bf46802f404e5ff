// vigil_jit_lines: where each source line of a loaded BPF program sits in its JIT image, so
// that perf samples inside the program (bpf_prog_<tag>_<name>+OFFSET) can be charged to the
// C line they came from (tc_profile.sh). bpftool can do this only when built with libbfd,
// which Debian's is not.
//
//   vigil_jit_lines PROG_ID
//
// Prints one line per function of the program ("func INDEX ADDRESS LENGTH NAME", hex address,
// length in bytes), then one line per line-info record ("line FUNC OFFSET INSN FILE:LINE SOURCE"):
// FUNC is the function the record falls in, OFFSET the record's byte offset from that
// function's start (hex), INSN its instruction index in the translated program.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "vigil_jit_lines: %s: %s\n", what, std::strerror(errno));
  return 1;
}

std::string one_line(const char* s) {
  std::string out = s ? s : "";
  const size_t start = out.find_first_not_of(" \t");
  out = start == std::string::npos ? "" : out.substr(start);
  for (char& c : out)
    if (c == '\n' || c == '\t') c = ' ';
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: vigil_jit_lines PROG_ID\n");
    return 2;
  }
  char* end = nullptr;
  const unsigned long id = std::strtoul(argv[1], &end, 10);
  if (!*argv[1] || *end || id == 0 || id > UINT32_MAX) {
    std::fprintf(stderr, "vigil_jit_lines: PROG_ID must be a program id, got '%s'\n", argv[1]);
    return 2;
  }
  const int fd = bpf_prog_get_fd_by_id(static_cast<uint32_t>(id));
  if (fd < 0) return fail("bpf_prog_get_fd_by_id");

  // First call: the counts; second: the arrays, sized by them.
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) return fail("bpf_obj_get_info_by_fd");
  const uint32_t n_funcs = info.nr_jited_ksyms, n_jlines = info.nr_jited_line_info, n_lines = info.nr_line_info;
  const uint32_t line_rec = info.line_info_rec_size, btf_id = info.btf_id;
  if (n_jlines == 0 || n_lines != n_jlines || line_rec < sizeof(bpf_line_info)) {
    std::fprintf(stderr, "vigil_jit_lines: program %lu has no usable line info (loaded without BTF?)\n", id);
    return 1;
  }
  std::vector<uint64_t> ksyms(n_funcs), jlines(n_jlines);
  std::vector<uint32_t> func_lens(n_funcs);
  std::vector<unsigned char> lines(static_cast<size_t>(n_lines) * line_rec);
  info = bpf_prog_info{};
  info.nr_jited_ksyms = n_funcs;
  info.jited_ksyms = reinterpret_cast<uintptr_t>(ksyms.data());
  info.nr_jited_func_lens = n_funcs;
  info.jited_func_lens = reinterpret_cast<uintptr_t>(func_lens.data());
  info.nr_jited_line_info = n_jlines;
  info.jited_line_info_rec_size = sizeof(uint64_t);
  info.jited_line_info = reinterpret_cast<uintptr_t>(jlines.data());
  info.nr_line_info = n_lines;
  info.line_info_rec_size = line_rec;
  info.line_info = reinterpret_cast<uintptr_t>(lines.data());
  len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) return fail("bpf_obj_get_info_by_fd (arrays)");
  close(fd);
  if (ksyms.empty() || ksyms[0] == 0) {
    std::fprintf(stderr, "vigil_jit_lines: no JIT addresses (not JITed, or kernel.kptr_restrict hides them)\n");
    return 1;
  }

  btf* b = btf__load_from_kernel_by_id(btf_id);
  if (!b) return fail("btf__load_from_kernel_by_id");
  for (uint32_t f = 0; f < n_funcs; ++f)
    std::printf("func %u %llx %u\n", f, static_cast<unsigned long long>(ksyms[f]), func_lens[f]);
  for (uint32_t i = 0; i < n_jlines; ++i) {
    const auto* li = reinterpret_cast<const bpf_line_info*>(lines.data() + static_cast<size_t>(i) * line_rec);
    // Functions are not laid out in order in memory: the one whose range holds the address.
    uint32_t g = n_funcs;
    for (uint32_t k = 0; k < n_funcs; ++k)
      if (jlines[i] >= ksyms[k] && jlines[i] < ksyms[k] + func_lens[k]) g = k;
    if (g == n_funcs) continue;
    const char* file = btf__name_by_offset(b, li->file_name_off);
    const char* src = btf__name_by_offset(b, li->line_off);
    std::string base = file ? file : "?";
    if (const size_t slash = base.rfind('/'); slash != std::string::npos) base = base.substr(slash + 1);
    std::printf("line %u %llx %u %s:%u %s\n", g, static_cast<unsigned long long>(jlines[i] - ksyms[g]), li->insn_off,
                base.c_str(), BPF_LINE_INFO_LINE_NUM(li->line_col), one_line(src).c_str());
  }
  btf__free(b);
  return 0;
}
