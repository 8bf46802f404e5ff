#include "engine/families/retina.h"

#include <functional>

namespace vigil {
namespace {

using Labels = std::map<std::string, std::string>;

Labels labels_of(const prometheus::ClientMetric& m) {
  Labels out;
  for (const auto& l : m.label) out[l.name] = l.value;
  return out;
}

double value_of(const prometheus::ClientMetric& m, prometheus::MetricType t) {
  return t == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
}

// Retina names the netfilter drop after iptables; other kernel reasons keep their own names,
// which are finer than Retina's.
std::string retina_reason(const std::string& reason) { return reason == "NETFILTER_DROP" ? "IPTABLE_RULE_DROP" : reason; }

// Local context, as Retina's advanced mode: outgoing traffic carries the source pod's labels,
// incoming traffic the destination pod's.
void add_context(Labels& out, const Labels& in, const RetinaPods& pods) {
  auto dir = in.find("direction");
  const std::string side = dir != in.end() && dir->second == "ingress" ? "destination_" : "source_";
  const std::string ns = in.count("namespace") ? in.at("namespace") : "unknown";
  const std::string pod = in.count("pod") ? in.at("pod") : "unknown";
  auto ip = pods.find({ns, pod});
  out[side + "ip"] = ip != pods.end() ? ip->second.ip : "unknown";
  out[side + "namespace"] = ns;
  out[side + "podname"] = pod;
  // The pod's workload is on each of its series when the source knows it (the Kubernetes API:
  // labels workload_kind and workload); a bare pod's, or a pods file's, is unknown, as in Retina.
  auto kind = in.find("workload_kind"), name = in.find("workload");
  out[side + "workload_kind"] = kind != in.end() ? kind->second : "unknown";
  out[side + "workload_name"] = name != in.end() ? name->second : "unknown";
}

class Builder {
 public:
  // Sums `value` into the series `labels` of gauge `name`.
  void add(const std::string& name, const std::string& help, const Labels& labels, double value) {
    auto& f = families_[name];
    f.help = help;
    f.series[labels] += value;
  }

  // Sums `value` into what the pod `source` adds to the node series `labels` of gauge `name`.
  void add_node(const std::string& name, const std::string& help, const Labels& labels, const Labels& source,
                double value) {
    node_help_[name] = help;
    node_[{name, labels}][source] += value;
  }

  // The node series: what their pods add now, with what `state` kept of pods gone and of resets.
  void settle_node(std::map<std::pair<std::string, Labels>, RetinaView::NodeSeries>& state) {
    for (auto& [key, now] : node_) state[key].help = node_help_[key.first];
    for (auto& [key, series] : state) {
      const auto it = node_.find(key);
      static const std::map<Labels, double> kNone;
      const auto& now = it != node_.end() ? it->second : kNone;
      for (const auto& [source, last] : series.last) {
        auto n = now.find(source);
        if (n == now.end() || n->second < last) series.kept += last;  // gone, or counting again from 0
      }
      series.last = now;
      double total = series.kept;
      for (const auto& [source, v] : now) total += v;
      auto& f = families_[key.first];
      f.help = series.help;
      f.series[key.second] = total;
    }
  }

  // A histogram as it is, its bucket bounds and sum scaled (Retina's are in milliseconds).
  void add_histogram(const std::string& name, const std::string& help, const prometheus::ClientMetric& m, double scale) {
    prometheus::MetricFamily mf;
    mf.name = name;
    mf.help = help;
    mf.type = prometheus::MetricType::Histogram;
    prometheus::ClientMetric out = m;
    out.histogram.sample_sum *= scale;
    for (auto& bucket : out.histogram.bucket) bucket.upper_bound *= scale;
    mf.metric.push_back(std::move(out));
    histograms_.push_back(std::move(mf));
  }

  std::vector<prometheus::MetricFamily> build() const {
    std::vector<prometheus::MetricFamily> out = histograms_;
    for (const auto& [name, f] : families_) {
      prometheus::MetricFamily mf;
      mf.name = name;
      mf.help = f.help;
      mf.type = prometheus::MetricType::Gauge;  // Retina exports these as gauges
      for (const auto& [labels, value] : f.series) {
        prometheus::ClientMetric m;
        for (const auto& [k, v] : labels) m.label.push_back({k, v});
        m.gauge.value = value;
        mf.metric.push_back(std::move(m));
      }
      out.push_back(std::move(mf));
    }
    return out;
  }

 private:
  struct Family {
    std::string help;
    std::map<Labels, double> series;
  };
  std::map<std::string, Family> families_;
  std::map<std::pair<std::string, Labels>, std::map<Labels, double>> node_;
  std::map<std::string, std::string> node_help_;
  std::vector<prometheus::MetricFamily> histograms_;
};

constexpr const char* kPrefix = "networkobservability_";

}  // namespace

std::vector<prometheus::MetricFamily> RetinaView::render(const std::vector<prometheus::MetricFamily>& vigil,
                                                         const RetinaPods& pods) {
  Builder b;
  for (const auto& family : vigil) {
    for (const auto& m : family.metric) {
      const Labels in = labels_of(m);
      const double v = value_of(m, family.type);
      // The pod a series belongs to, whatever its other labels: its part of a node series.
      auto pod_of = [&] {
        Labels source{{"family", family.name}};
        for (const char* k : {"namespace", "pod"})
          if (auto it = in.find(k); it != in.end()) source[k] = it->second;
        return source;
      };
      auto node_and_pod = [&](const std::string& node_name, const std::string& adv_name, const std::string& help,
                              std::initializer_list<std::string> keep) {
        Labels node, adv;
        for (const auto& k : keep)
          if (auto it = in.find(k); it != in.end()) node[k] = k == "reason" ? retina_reason(it->second) : it->second;
        adv = node;
        add_context(adv, in, pods);
        if (!node_name.empty()) b.add_node(kPrefix + node_name, help + " (node)", node, pod_of(), v);
        if (!adv_name.empty()) b.add(kPrefix + adv_name, help + " (pod)", adv, v);
      };
      const std::string& n = family.name;
      if (n == "vigil_forward_packets_total") node_and_pod("forward_count", "adv_forward_count", "Forwarded packets", {"direction"});
      else if (n == "vigil_forward_bytes_total") node_and_pod("forward_bytes", "adv_forward_bytes", "Forwarded bytes", {"direction"});
      else if (n == "vigil_drop_packets_total") node_and_pod("drop_count", "adv_drop_count", "Dropped packets", {"direction", "reason"});
      else if (n == "vigil_drop_bytes_total") node_and_pod("drop_bytes", "adv_drop_bytes", "Dropped bytes", {"direction", "reason"});
      // Retina's node gauge has direction and flag; its pod-level count has the flag only.
      else if (n == "vigil_tcp_flags_total") {
        node_and_pod("tcp_flag_gauges", "", "TCP segments by flag", {"direction", "flag"});
        node_and_pod("", "adv_tcpflags_count", "TCP segments by flag", {"flag"});
      }
      // A pod's retransmits are segments it sends: Retina's local context counts them at egress.
      else if (n == "vigil_tcp_retransmits_total") {
        Labels adv{{"direction", "egress"}};
        add_context(adv, in, pods);
        b.add(std::string(kPrefix) + "adv_tcpretrans_count", "TCP retransmits (pod)", adv, v);
      } else if (n == "vigil_apiserver_first_response_seconds")
        b.add_histogram(std::string(kPrefix) + "adv_node_apiserver_latency",
                        "API server first-response latency in milliseconds (node)", m, 1000);
      else if (n == "vigil_apiserver_handshake_seconds") {
        b.add_histogram(std::string(kPrefix) + "adv_node_apiserver_tcp_handshake_latency",
                        "API server TCP handshake latency in milliseconds (node)", m, 1000);
        // The name Retina declares for the same histogram in its basic mode, which its pod-level
        // dashboard reads.
        b.add_histogram(std::string(kPrefix) + "node_apiserver_handshake_latency_ms",
                        "API server TCP handshake latency in milliseconds (node)", m, 1000);
      } else if (n == "vigil_apiserver_no_response_total")
        b.add(std::string(kPrefix) + "adv_node_apiserver_no_response",
              "Connections to the API server without a SYN-ACK or an answer in time (node)",
              {{"no_response", "no_response"}}, v);
      // Retina's linuxutil plugin: the node's own namespace.
      else if (n == "vigil_node_netstat_total") {
        const std::string group = in.count("group") ? in.at("group") : "";
        const std::string stat = in.count("statistic") ? in.at("statistic") : "";
        if (group == "TcpExt" || group == "MPTcpExt")
          b.add(std::string(kPrefix) + "tcp_connection_stats", "TCP statistics of the node (netstat)", {{"statistic_name", stat}}, v);
        else if (group == "IpExt")
          b.add(std::string(kPrefix) + "ip_connection_stats", "IP statistics of the node (netstat)", {{"statistic_name", stat}}, v);
      } else if (n == "vigil_node_tcp_sockets")
        b.add(std::string(kPrefix) + "tcp_state", "TCP sockets of the node by state", {{"state", in.count("state") ? in.at("state") : ""}}, v);
      else if (n == "vigil_node_interface_stats_total")
        b.add(std::string(kPrefix) + "interface_stats", "Interface error and drop counters of the node",
              {{"interface_name", in.count("interface") ? in.at("interface") : ""},
               {"statistic_name", in.count("statistic") ? in.at("statistic") : ""}},
              v);
      else if (n == "vigil_node_udp_sockets")
        b.add(std::string(kPrefix) + "udp_connection_stats", "UDP sockets of the node", {{"statistic_name", "ACTIVE"}}, v);
      else if (n == "vigil_dns_requests_total" || n == "vigil_dns_responses_total") {
        const bool response = n == "vigil_dns_responses_total";
        Labels node;
        node["query_type"] = in.count("qtype") ? in.at("qtype") : "unknown";
        node["query"] = "";  // Vigil does not keep query names: they are unbounded
        if (response) {
          node["return_code"] = in.count("rcode") ? in.at("rcode") : "unknown";
          node["response"] = "";
          node["num_response"] = "";
        }
        Labels adv = node;
        add_context(adv, in, pods);
        const std::string base = response ? "dns_response_count" : "dns_request_count";
        b.add_node(kPrefix + base, response ? "DNS responses (node)" : "DNS requests (node)", node, pod_of(), v);
        b.add(kPrefix + ("adv_" + base), response ? "DNS responses (pod)" : "DNS requests (pod)", adv, v);
      }
    }
  }
  b.settle_node(node_);
  return b.build();
}

}  // namespace vigil
