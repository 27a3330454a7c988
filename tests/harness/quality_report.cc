// quality_report: every compaction method at every ratio on real-model KV (stories260K), scored
// end to end against the full cache on held-out continuations.
//
//   quality_report [--model PATH] [--out DIR] [--seed N] [--context T] [--heldout N]
//
// Writes DIR/quality_report.md (a markdown table: mean KL(full || compacted), top-1 agreement,
// perplexity ratio compacted/full, mean held-out attention cosine) and DIR/quality_kl.png (KL
// against ratio, one line per method, drawn by gnuplot when it is installed; otherwise the plot
// is skipped with a message). The table is also printed. Exit status: 0 when every row ran, 1
// when a method failed (its row says why), 2 on bad arguments or a missing model.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/compactor.h"
#include "kernels/spec.h"
#include "tests/harness/data.h"
#include "tests/harness/eval.h"
#include "tests/harness/llama2.h"

namespace kvc::harness {
namespace {

const double kRatios[] = {2, 5, 10, 20, 50};
// One distinct colour per method line (gnuplot's default cycle repeats after eight).
const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct MethodCase {
  std::string label;
  std::function<void(CompactionSpec*)> configure;
};

std::vector<MethodCase> Methods() {
  auto am = [](AmSelection sel) {
    return [sel](CompactionSpec* s) {
      s->method = Method::kAttentionMatching;
      s->am.selection = sel;
    };
  };
  auto plain = [](Method m) { return [m](CompactionSpec* s) { s->method = m; }; };
  return {
      {"AM (highest attention)", am(AmSelection::kHighestAttention)},
      {"AM (OMP-fast)", am(AmSelection::kOmpFast)},
      {"OK-DMD", plain(Method::kOkDmd)},
      {"OK-DMD select + AM fit",
       [](CompactionSpec* s) {
         s->method = Method::kAttentionMatching;
         s->am.selection = AmSelection::kScores;
         s->am.selector = Method::kOkDmd;
       }},
      {"DynamicKV", plain(Method::kDynamicKv)},
      {"D2O", plain(Method::kD2o)},
      {"H2O", plain(Method::kH2o)},
      {"SnapKV", plain(Method::kSnapKv)},
      {"StreamingLLM", plain(Method::kStreamingLlm)},
      {"PyramidKV", plain(Method::kPyramidKv)},
  };
}

struct Row {
  std::string method;
  double ratio = 0;
  bool ok = false;
  std::string error;
  double achieved_ratio = 0;  // T * heads * layers / entries actually kept
  EndToEndMetrics e2e;
  AttentionFidelity fid;
  double kernel_cosine = 0;  // kvc::EvaluateFidelity on the same queries, as a cross-check
  double seconds = 0;
};

struct Args {
  std::string model;
  std::string out = ".";
  uint64_t seed = 1;
  int64_t context = 448;
  int heldout = 8;
};

template <typename T>
bool ParseNumber(const std::string& v, T* out) {
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc() && end == v.data() + v.size();
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    bool ok = true;
    if (k == "--model") {
      a->model = v;
    } else if (k == "--out") {
      a->out = v;
    } else if (k == "--seed") {
      ok = ParseNumber(v, &a->seed);
    } else if (k == "--context") {
      ok = ParseNumber(v, &a->context);
    } else if (k == "--heldout") {
      ok = ParseNumber(v, &a->heldout);
    } else {
      ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

Row RunOne(const Llama2Model& model, const HarnessData& data, const FullReference& ref,
           const MethodCase& m, double ratio) {
  Row row;
  row.method = m.label;
  row.ratio = ratio;
  CompactionSpec spec;
  spec.ratio = ratio;
  spec.seed = 1;
  m.configure(&spec);
  const auto t0 = std::chrono::steady_clock::now();
  Result<CompactionResult> r = Compact(data.cache, spec);
  row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r.ok()) {
    row.error = r.status().ToString();
    return row;
  }
  const CompactedCache& c = r->cache;
  const KvLayout& L = c.layout;
  row.achieved_ratio = double(L.tokens) * L.n_layers * L.n_kv_heads /
                       double(std::max<int64_t>(c.total_entries(), 1));
  auto e2e = EvaluateAgainst(model, ref, c);
  auto fid = MeasureAttentionFidelity(data.cache, data.heldout_queries, c);
  auto kf = EvaluateFidelity(data.cache, c, data.heldout_queries);
  if (!e2e.ok() || !fid.ok() || !kf.ok()) {
    row.error = (!e2e.ok() ? e2e.status() : !fid.ok() ? fid.status() : kf.status()).ToString();
    return row;
  }
  row.ok = true;
  row.e2e = *e2e;
  row.fid = *fid;
  row.kernel_cosine = kf->overall.cosine.mean;
  return row;
}

std::string Fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, x);
  return buf;
}

std::string Markdown(const std::vector<Row>& rows, const HarnessData& data, const Args& a) {
  std::ostringstream md;
  md << "# Compaction quality on stories260K\n\n"
     << "Context T = " << data.context.size() << " tokens sampled at temperature 1 from [BOS] "
     << "(seed " << a.seed << "); held out: " << data.heldout.size() << " continuations of "
     << data.heldout[0].size() << " tokens. KL = mean KL(full || compacted) in nats over "
     << "held-out next-token distributions; top-1 = argmax agreement; ppl ratio = perplexity "
     << "under the compacted cache / under the full cache; cosine = mean held-out attention "
     << "output cosine over (layer, kv head).\n\n"
     << "| method | ratio | achieved | KL | top-1 | ppl ratio | cosine | seconds |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    md << "| " << r.method << " | " << Fmt("%.0f", r.ratio) << " | ";
    if (!r.ok) {
      md << "error: " << r.error << " | | | | | |\n";
      continue;
    }
    md << Fmt("%.1f", r.achieved_ratio) << " | " << Fmt("%.4g", r.e2e.mean_kl) << " | "
       << Fmt("%.3f", r.e2e.top1_agreement) << " | " << Fmt("%.3f", r.e2e.ppl_ratio()) << " | "
       << Fmt("%.4f", r.fid.mean_cosine) << " | " << Fmt("%.3f", r.seconds) << " |\n";
  }
  double worst = 0;
  for (const Row& r : rows) {
    if (r.ok) worst = std::max(worst, std::abs(r.fid.mean_cosine - r.kernel_cosine));
  }
  md << "\nCross-check: the harness cosine (f64) and kvc::EvaluateFidelity (f32) on the same "
     << "held-out queries differ by at most " << Fmt("%.2g", worst) << ".\n";
  return md.str();
}

bool HaveGnuplot() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::error_code ec;
    if (!dir.empty() && std::filesystem::exists(std::filesystem::path(dir) / "gnuplot", ec)) {
      return true;
    }
  }
  return false;
}

// Writes the data and script next to the PNG and runs gnuplot on them.
void Plot(const std::vector<Row>& rows, const std::filesystem::path& out) {
  if (!HaveGnuplot()) {
    std::cout << "gnuplot not found on PATH: skipping the KL plot\n";
    return;
  }
  const auto dat = out / "quality_kl.dat";
  const auto gp = out / "quality_kl.gp";
  const auto png = out / "quality_kl.png";
  std::ofstream d(dat);
  std::vector<std::string> methods;
  for (const Row& r : rows) {
    if (methods.empty() || methods.back() != r.method) {
      if (!methods.empty()) d << "\n\n";
      methods.push_back(r.method);
    }
    if (r.ok) d << r.ratio << " " << std::max(r.e2e.mean_kl, 1e-9) << "\n";
  }
  d.close();
  std::ofstream s(gp);
  s << "set terminal png size 1000,650\nset output '" << png.string() << "'\n"
    << "set logscale xy\nset xlabel 'compaction ratio'\nset ylabel 'mean KL(full || compacted), "
       "nats'\nset title 'stories260K: held-out KL against compaction ratio'\n"
    << "set key outside right\nset grid\nplot ";
  for (size_t i = 0; i < methods.size(); ++i) {
    s << (i ? ", " : "") << "'" << dat.string() << "' index " << i
      << " using 1:2 with linespoints lw 2 lc rgb '" << kColors[i % std::size(kColors)]
      << "' title '" << methods[i] << "'";
  }
  s << "\n";
  s.close();
  const std::string cmd = "gnuplot '" + gp.string() + "'";
  if (std::system(cmd.c_str()) != 0) {
    std::cout << "gnuplot failed (" << cmd << "): no plot\n";
  } else {
    std::cout << "plot: " << png.string() << "\n";
  }
}

int Main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::cerr << "usage: quality_report [--model PATH] [--out DIR] [--seed N] [--context T] "
                 "[--heldout N]\n";
    return 2;
  }
  if (a.model.empty()) a.model = FindTestModel().path;
  auto model = Llama2Model::Load(a.model.empty() ? "stories260K.bin" : a.model);
  if (!model.ok()) {
    std::cerr << model.status().ToString() << " (tried: " << FindTestModel().tried << ")\n";
    return 2;
  }
  DataOptions o;
  o.context_tokens = a.context;
  o.seed = a.seed;
  o.heldout_continuations = a.heldout;
  auto data = ProduceData(*model, o);
  if (!data.ok()) {
    std::cerr << data.status().ToString() << "\n";
    return 2;
  }
  auto ref = ComputeFullReference(*model, data->context, data->heldout);
  if (!ref.ok()) {
    std::cerr << ref.status().ToString() << "\n";
    return 2;
  }
  std::vector<Row> rows;
  bool all_ok = true;
  for (const MethodCase& m : Methods()) {
    for (double ratio : kRatios) {
      rows.push_back(RunOne(*model, *data, *ref, m, ratio));
      all_ok = all_ok && rows.back().ok;
    }
  }
  const std::string md = Markdown(rows, *data, a);
  std::filesystem::create_directories(a.out);
  const auto md_path = std::filesystem::path(a.out) / "quality_report.md";
  std::ofstream(md_path) << md;
  std::cout << md << "\nreport: " << md_path.string() << "\n";
  Plot(rows, a.out);
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace kvc::harness

int main(int argc, char** argv) { return kvc::harness::Main(argc, argv); }
