#include "services/cli/remote_tokens.h"

#include <charconv>

#include "common/sha256.h"

namespace kvc::cli {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::vector<int32_t>> ParseTokenList(std::string_view text) {
  text = Trim(text);
  if (text.starts_with("[") && text.ends_with("]")) text = text.substr(1, text.size() - 2);
  std::vector<int32_t> ids;
  size_t index = 0;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view entry = Trim(text.substr(0, comma));
    int32_t id = -1;
    const auto [end, ec] = std::from_chars(entry.data(), entry.data() + entry.size(), id);
    if (entry.empty() || ec != std::errc() || end != entry.data() + entry.size() || id < 0) {
      return Status::InvalidArgument("token list: entry " + std::to_string(index) + " ('" +
                                     std::string(entry) + "') is not a non-negative int32 id");
    }
    ids.push_back(id);
    ++index;
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return ids;
}

std::vector<int32_t> DeriveTokens(const KvCache& cache) {
  const KvLayout& l = cache.layout;
  const Tensor& k = cache.layers.at(0).k;  // [n_kv_heads, T, head_dim]
  const size_t row = static_cast<size_t>(l.head_dim) * DTypeSize(k.dtype());
  const auto* base = static_cast<const uint8_t*>(k.raw());
  std::vector<int32_t> ids(static_cast<size_t>(l.tokens));
  for (int64_t t = 0; t < l.tokens; ++t) {
    Sha256 h;
    for (int head = 0; head < l.n_kv_heads; ++head) {
      const size_t offset =
          (static_cast<size_t>(head) * static_cast<size_t>(l.tokens) + static_cast<size_t>(t)) *
          row;
      h.Update(std::span<const uint8_t>(base + offset, row));
    }
    const Sha256::Digest d = h.Finish();
    const uint32_t v = static_cast<uint32_t>(d[0]) | static_cast<uint32_t>(d[1]) << 8 |
                       static_cast<uint32_t>(d[2]) << 16 | static_cast<uint32_t>(d[3]) << 24;
    ids[static_cast<size_t>(t)] = static_cast<int32_t>(v & 0x7fffffffu);
  }
  return ids;
}

Result<DumpTokens> TokensForDump(const KvCache& cache, const std::vector<int32_t>& given,
                                 bool require_metadata) {
  const int64_t t = cache.layout.tokens;
  DumpTokens out;
  if (!given.empty()) {
    if (static_cast<int64_t>(given.size()) != t) {
      return Status::InvalidArgument("--tokens has " + std::to_string(given.size()) +
                                     " ids but the dump has " + std::to_string(t) + " tokens");
    }
    out.ids = given;
    out.origin = TokenOrigin::kGiven;
    return out;
  }
  const auto it = cache.metadata.find("tokens");
  std::string why = "the dump has no \"tokens\" metadata";
  if (it != cache.metadata.end()) {
    Result<std::vector<int32_t>> ids = ParseTokenList(it->second);
    if (ids.ok() && static_cast<int64_t>(ids->size()) == t) {
      out.ids = std::move(ids).value();
      out.origin = TokenOrigin::kMetadata;
      return out;
    }
    why = ids.ok() ? "its \"tokens\" metadata lists " + std::to_string(ids->size()) + " ids for " +
                         std::to_string(t) + " tokens"
                   : "its \"tokens\" metadata is not a list of token ids";
  }
  if (require_metadata) {
    return Status::InvalidArgument("--tokens-from-metadata: " + why);
  }
  out.ids = DeriveTokens(cache);
  out.origin = TokenOrigin::kDerived;
  out.note = why +
             "; token ids are derived from a content hash of layer 0's keys at each "
             "position (only dumps made the same way share prefixes)";
  return out;
}

}  // namespace kvc::cli
