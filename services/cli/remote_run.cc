// `kvcompact put | lookup | fetch | stats` over the client library (usage in remote.h).
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/kv_io.h"
#include "services/cli/commands.h"
#include "services/cli/remote_flags.h"
#include "services/cli/remote_tokens.h"
#include "services/client/client.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"

namespace kvc::cli {
namespace {

using client::Client;
using Json = nlohmann::ordered_json;

int Fail(std::ostream& err, const Status& st, int code) {
  err << "error: " << st.ToString() << "\n";
  return code;
}

// Flags -> CompactionSpec; every error here is bad usage.
Result<CompactionSpec> BuildSpec(const RemoteFlags& f) {
  CompactionSpec s;
  KVC_ASSIGN_OR_RETURN(s.method, ParseMethod(f.method));
  KVC_ASSIGN_OR_RETURN(s.allocator, ParseAllocator(f.allocator));
  KVC_ASSIGN_OR_RETURN(s.am.selection, ParseAmSelection(f.am_selection));
  KVC_ASSIGN_OR_RETURN(s.am.selector, ParseMethod(f.selector));
  s.ratio = f.ratio;
  s.budget = f.budget;
  s.seed = f.seed;
  s.heldout_fraction = f.heldout_fraction;
  s.gate.min_cosine = f.gate_min_cosine;
  for (const std::string& kv : f.options) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument("--option '" + kv + "' is not KEY=VALUE");
    }
    KVC_RETURN_IF_ERROR(rpc::ApplySpecOption(&s, kv.substr(0, eq), kv.substr(eq + 1)));
  }
  KVC_RETURN_IF_ERROR(s.Validate());
  return s;
}

// "L:KV:Q:D:DTYPE", e.g. "32:8:32:128:f16".
Result<KvLayout> ParseLayout(const std::string& text) {
  KvLayout l;
  int* dims[] = {&l.n_layers, &l.n_kv_heads, &l.n_q_heads, &l.head_dim};
  std::string_view rest = text;
  for (int* d : dims) {
    const size_t colon = rest.find(':');
    const std::string_view part = rest.substr(0, colon);
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), *d);
    if (colon == std::string_view::npos || ec != std::errc() || end != part.data() + part.size()) {
      return Status::InvalidArgument("--layout '" + text + "' is not L:KV:Q:D:DTYPE");
    }
    rest = rest.substr(colon + 1);
  }
  std::string dtype(rest);
  for (char& c : dtype) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  KVC_ASSIGN_OR_RETURN(l.dtype, ParseDType(dtype));
  l.tokens = 1;
  KVC_RETURN_IF_ERROR(l.Validate().WithContext("--layout"));
  return l;
}

// What a command asks about: the tokens, the layout, and the dump when there is one.
struct Request {
  std::optional<KvCache> cache;
  KvLayout layout;
  std::vector<int32_t> tokens;
  std::string model;
};

// Reads --in / --tokens / --layout. *usage says whether a failure is bad usage (else runtime).
Result<Request> LoadRequest(const RemoteFlags& f, std::ostream& err, bool* usage) {
  Request r;
  *usage = true;
  std::vector<int32_t> given;
  if (!f.tokens.empty()) {
    KVC_ASSIGN_OR_RETURN(given, ParseTokenList(f.tokens));
  }
  if (f.in.empty()) {
    if (given.empty() || f.layout.empty()) {
      return Status::InvalidArgument("give --in DUMP, or --tokens with --layout");
    }
    KVC_ASSIGN_OR_RETURN(r.layout, ParseLayout(f.layout));
    r.layout.tokens = static_cast<int64_t>(given.size());
    r.tokens = std::move(given);
    r.model = f.model.empty() ? "default" : f.model;
    return r;
  }
  *usage = false;
  KVC_ASSIGN_OR_RETURN(KvCache cache, LoadKvCache(f.in));
  *usage = true;
  KVC_ASSIGN_OR_RETURN(DumpTokens t, TokensForDump(cache, given, f.tokens_from_metadata));
  if (!t.note.empty()) err << "note: " << f.in << ": " << t.note << "\n";
  const auto model = cache.metadata.find("model");
  r.model = !f.model.empty()                                          ? f.model
            : model != cache.metadata.end() && !model->second.empty() ? model->second
                                                                      : "default";
  r.layout = cache.layout;
  r.tokens = std::move(t.ids);
  r.cache = std::move(cache);
  return r;
}

Result<std::unique_ptr<Client>> MakeClient(const RemoteFlags& f, const std::string& model) {
  client::ClientOptions o;
  KVC_ASSIGN_OR_RETURN(o.workers, client::ParseWorkerList(f.workers));
  KVC_ASSIGN_OR_RETURN(o.hash_algo, ParseHashAlgo(f.hash));
  KVC_ASSIGN_OR_RETURN(o.ucx_mode, client::ParseUcxMode(f.ucx));
  o.tenant = f.tenant;
  o.model_id = model;
  o.block_size = f.block_size;
  if (f.timeout_ms < 0) return Status::InvalidArgument("--timeout-ms is negative");
  return Client::Create(std::move(o));
}

std::string Short(const std::string& bytes) { return engine::HexOf(bytes).substr(0, 16); }

Json FidelityJson(const engine::EntryFidelity& fi) {
  return {{"measured", fi.measured},
          {"mean_cosine", fi.mean_cosine},
          {"min_cosine", fi.min_cosine},
          {"p10_cosine", fi.p10_cosine},
          {"gate_requested", fi.gate_requested},
          {"gate_passed", fi.gate_passed}};
}

Json EntryJson(const engine::EntryInfo& e) {
  return {{"block_hash", engine::HexOf(e.block_hash)},
          {"spec_hash", engine::HexOf(e.spec_hash)},
          {"method", e.method},
          {"source_tokens", e.layout.tokens},
          {"entries", e.entries},
          {"payload_bytes", e.payload_bytes},
          {"fidelity", FidelityJson(e.fidelity)}};
}

int RunPut(const RemoteFlags& f, Client& c, const Request& r, const CompactionSpec& spec,
           const client::CallOptions& call, std::ostream& out, std::ostream& err) {
  Result<client::CompactReply> put = c.Compact(r.tokens, *r.cache, spec, call);
  if (!put.ok()) return Fail(err, put.status(), kExitRuntime);
  const engine::CompactOutcome& o = put->outcome;
  if (f.json) {
    out << Json{{"stored", o.stored},
                {"worker", put->worker},
                {"transport", put->via_ucx ? "ucx" : "inline"},
                {"attempts", put->attempts},
                {"tokens", r.tokens.size()},
                {"achieved_ratio", o.achieved_ratio},
                {"queue_ms", o.queue_ms},
                {"compute_ms", o.compute_ms},
                {"entry", EntryJson(o.entry)}}
               .dump()
        << "\n";
  } else {
    char line[512];
    std::snprintf(line, sizeof(line),
                  "%s %s/%s on %s via %s: %zu tokens, ratio %.2f, %lld entries, mean cosine "
                  "%.5f, queue %.1f ms, compute %.1f ms\n",
                  o.stored ? "stored" : "NOT stored", Short(o.entry.block_hash).c_str(),
                  Short(o.entry.spec_hash).c_str(), put->worker.c_str(),
                  put->via_ucx ? "ucx" : "inline", r.tokens.size(), o.achieved_ratio,
                  static_cast<long long>(o.entry.entries), o.entry.fidelity.mean_cosine, o.queue_ms,
                  o.compute_ms);
    out << line;
  }
  if (!o.stored) {
    return Fail(err, Status::FailedPrecondition("the result failed its quality gate; not stored"),
                kExitRuntime);
  }
  return kExitOk;
}

int RunLookup(const RemoteFlags& f, Client& c, const Request& r, const CompactionSpec& spec,
              const client::CallOptions& call, std::ostream& out, std::ostream& err) {
  Result<client::LookupReply> l = c.Lookup(r.tokens, r.layout, spec, call);
  if (!l.ok()) return Fail(err, l.status(), kExitRuntime);
  if (f.json) {
    Json j{{"chain_blocks", l->chain_blocks},
           {"matched_blocks", l->matched_blocks},
           {"matched_tokens", l->matched_tokens},
           {"tokens", r.tokens.size()},
           {"worker", l->ref.worker},
           {"workers_answered", l->workers_answered}};
    if (l->entry) j["entry"] = EntryJson(*l->entry);
    out << j.dump() << "\n";
  } else if (l->matched_blocks == 0) {
    out << "miss: 0/" << l->chain_blocks << " blocks of " << r.tokens.size() << " tokens\n";
  } else {
    out << "hit: " << l->matched_blocks << "/" << l->chain_blocks << " blocks ("
        << l->matched_tokens << " of " << r.tokens.size() << " tokens) on " << l->ref.worker << ": "
        << l->entry->method << ", " << l->entry->entries << " entries, entry "
        << Short(l->ref.block_hash) << "\n";
  }
  return kExitOk;
}

int RunFetch(const RemoteFlags& f, Client& c, const Request& r, const CompactionSpec& spec,
             const client::CallOptions& call, std::ostream& out, std::ostream& err) {
  Result<client::PrefixHit> hit = c.FetchPrefix(r.tokens, r.layout, spec, call);
  if (!hit.ok()) return Fail(err, hit.status(), kExitRuntime);
  const Status saved = SaveCompactedCache(f.out, hit->fetch.cache);
  if (!saved.ok()) return Fail(err, saved, kExitRuntime);
  if (f.json) {
    out << Json{{"out", f.out},
                {"matched_blocks", hit->lookup.matched_blocks},
                {"chain_blocks", hit->lookup.chain_blocks},
                {"matched_tokens", hit->lookup.matched_tokens},
                {"worker", hit->fetch.worker},
                {"transport", hit->fetch.via_ucx ? "ucx" : "inline"},
                {"entries", hit->fetch.cache.total_entries()}}
               .dump()
        << "\n";
  } else {
    out << "wrote " << f.out << ": the compacted " << hit->lookup.matched_tokens
        << "-token prefix (" << hit->lookup.matched_blocks << "/" << hit->lookup.chain_blocks
        << " blocks, " << hit->fetch.cache.total_entries() << " entries) from " << hit->fetch.worker
        << " via " << (hit->fetch.via_ucx ? "ucx" : "inline") << "\n";
  }
  return kExitOk;
}

Json StatsJson(const client::WorkerReport<engine::EngineStats>& s,
               const client::WorkerReport<client::WorkerHealth>& h) {
  Json j{{"worker", s.worker}, {"ok", s.status.ok()}};
  if (!s.status.ok()) j["error"] = s.status.ToString();
  if (h.value) {
    j["serving"] = h.value->serving;
    j["ucx_address"] = h.value->ucx_address;
    j["version"] = h.value->version;
  }
  if (s.value) {
    const engine::EngineStats& v = *s.value;
    j["queue_depth"] = v.queue_depth;
    j["queue_capacity"] = v.queue_capacity;
    j["jobs_succeeded"] = v.jobs_succeeded;
    j["jobs_failed"] = v.jobs_failed;
    j["jobs_rejected"] = v.jobs_rejected;
    j["store_puts"] = v.store.puts;
    j["store_lookups"] = v.store.lookups;
    j["stored_entries"] = v.store.warm.entries + v.store.cold.entries;
    j["uptime_ms"] = v.uptime_ms;
  }
  return j;
}

std::string StatsLine(const client::WorkerReport<engine::EngineStats>& s,
                      const client::WorkerReport<client::WorkerHealth>& h) {
  if (!s.status.ok()) return s.worker + "  DOWN  " + s.status.ToString() + "\n";
  const engine::EngineStats& v = *s.value;
  const bool serving = h.value && h.value->serving;
  const std::string ucx = h.value && !h.value->ucx_address.empty() ? h.value->ucx_address : "off";
  return s.worker + "  " + (serving ? "serving" : "not serving") + "  ucx=" + ucx + "  queue " +
         std::to_string(v.queue_depth) + "/" + std::to_string(v.queue_capacity) + "  jobs ok " +
         std::to_string(v.jobs_succeeded) + " failed " + std::to_string(v.jobs_failed) +
         " rejected " + std::to_string(v.jobs_rejected) + "  store puts " +
         std::to_string(v.store.puts) + " lookups " + std::to_string(v.store.lookups) +
         " entries " + std::to_string(v.store.warm.entries + v.store.cold.entries) + "  uptime " +
         std::to_string(v.uptime_ms / 1000) + " s\n";
}

// Exit 1 only when no worker answered.
int RunStats(const RemoteFlags& f, Client& c, const client::CallOptions& call, std::ostream& out,
             std::ostream& err) {
  const auto health = c.Health(call);
  const auto stats = c.Stats(call);
  Json all = Json::array();
  size_t down = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    if (!stats[i].status.ok()) ++down;
    if (f.json) {
      all.push_back(StatsJson(stats[i], health[i]));
    } else {
      out << StatsLine(stats[i], health[i]);
    }
  }
  if (f.json) out << all.dump() << "\n";
  if (down == stats.size()) {
    return Fail(err, Status::Unavailable("no worker answered"), kExitRuntime);
  }
  return kExitOk;
}

}  // namespace

int RunRemote(const RemoteFlags& f, std::ostream& out, std::ostream& err) {
  std::optional<CompactionSpec> spec;
  Request request;
  if (f.op != RemoteOp::kStats) {
    Result<CompactionSpec> s = BuildSpec(f);
    if (!s.ok()) return Fail(err, s.status(), kExitUsage);
    spec = std::move(s).value();
    bool usage = false;
    Result<Request> r = LoadRequest(f, err, &usage);
    if (!r.ok()) return Fail(err, r.status(), usage ? kExitUsage : kExitRuntime);
    request = std::move(r).value();
  }
  Result<std::unique_ptr<Client>> c =
      MakeClient(f, request.model.empty() ? "default" : request.model);
  if (!c.ok()) return Fail(err, c.status(), kExitUsage);
  client::CallOptions call;
  call.timeout = std::chrono::milliseconds(f.timeout_ms);
  switch (f.op) {
    case RemoteOp::kPut:
      return RunPut(f, **c, request, *spec, call, out, err);
    case RemoteOp::kLookup:
      return RunLookup(f, **c, request, *spec, call, out, err);
    case RemoteOp::kFetch:
      return RunFetch(f, **c, request, *spec, call, out, err);
    case RemoteOp::kStats:
      return RunStats(f, **c, call, out, err);
    case RemoteOp::kNone:
      break;
  }
  return Fail(err, Status::InvalidArgument("no remote command chosen"), kExitUsage);
}

}  // namespace kvc::cli
