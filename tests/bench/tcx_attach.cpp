// vigil_tcx_attach OBJ IFNAME...: loads the BPF object OBJ, attaches its first program as a TCX
// link on the ingress and the egress of each interface, prints "attached" and holds the links
// until SIGTERM or SIGINT (closing them detaches). wrk_ratio.sh ATTACH=empty runs it with
// empty_tc.bpf.o on the lab pods' host-side veths: what the hooks Vigil uses cost on their own,
// with a program that does nothing, measured like the agent.
// VIGIL_TCX_HOOKS=ingress or egress attaches to that hook only (default: both), to tell what
// each hook costs.
// vigil_tcx_attach OBJ (no interface): attaches the first program where its section says (a
// tp_btf program to its tracepoint), likewise held until a signal: drop_cost.sh's baseline.
// It sleeps in sigwait meanwhile: no timer wakes it, as none wakes an idle agent.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kTcxIngress = 46;  // BPF_TCX_INGRESS (libbpf 1.1's headers predate it)
constexpr int kTcxEgress = 47;   // BPF_TCX_EGRESS

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OBJ [IFNAME...]\n", argv[0]);
    return 2;
  }
  const char* hooks = std::getenv("VIGIL_TCX_HOOKS");
  const std::string which = hooks ? hooks : "both";
  if (which != "both" && which != "ingress" && which != "egress") {
    std::fprintf(stderr, "vigil_tcx_attach: VIGIL_TCX_HOOKS must be ingress, egress or both, not %s\n", which.c_str());
    return 2;
  }
  std::vector<int> types;
  if (which != "egress") types.push_back(kTcxIngress);
  if (which != "ingress") types.push_back(kTcxEgress);
  // Blocked from the start, so that a signal before sigwait stays pending instead of killing us
  // with the links held.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  bpf_object* obj = bpf_object__open_file(argv[1], nullptr);
  if (!obj || bpf_object__load(obj) != 0) {
    std::fprintf(stderr, "vigil_tcx_attach: load %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  bpf_program* prog = bpf_object__next_program(obj, nullptr);
  if (!prog) {
    std::fprintf(stderr, "vigil_tcx_attach: no program in %s\n", argv[1]);
    return 1;
  }
  std::vector<int> links;
  int status = 0;
  bpf_link* traced = nullptr;
  if (argc == 2) {
    traced = bpf_program__attach(prog);
    if (!traced) {
      std::fprintf(stderr, "vigil_tcx_attach: attach %s: %s\n", bpf_program__name(prog), std::strerror(errno));
      status = 1;
    }
  }
  for (int i = 2; i < argc && status == 0; ++i) {
    const unsigned ifindex = if_nametoindex(argv[i]);
    if (ifindex == 0) {
      std::fprintf(stderr, "vigil_tcx_attach: no interface %s\n", argv[i]);
      status = 1;
      break;
    }
    for (int type : types) {
      const int link = bpf_link_create(bpf_program__fd(prog), static_cast<int>(ifindex),
                                       static_cast<bpf_attach_type>(type), nullptr);
      if (link < 0) {
        std::fprintf(stderr, "vigil_tcx_attach: attach to %s: %s\n", argv[i], std::strerror(errno));
        status = 1;
        break;
      }
      links.push_back(link);
    }
  }
  if (status == 0) {
    std::printf("attached\n");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
  }
  for (int link : links) close(link);
  if (traced) bpf_link__destroy(traced);
  bpf_object__close(obj);
  return status;
}
