#include "services/cli/batch_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/kv_io.h"
#include "common/prefix_hash.h"
#include "common/sha256.h"

#ifdef KVC_BATCH_WITH_STORE
#include "storage/tiered_store.h"
#endif

namespace kvc::cli {
namespace {

std::string DigestBytes(const Sha256::Digest& d) { return std::string(d.begin(), d.end()); }

// SHA-256 of a file's bytes, read in blocks (the page cache holds them, not the process).
Result<std::string> HashFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open " + path + ": " + std::strerror(errno));
  Sha256 h;
  std::vector<uint8_t> buf(size_t{4} << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::IOError("read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    h.Update(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return DigestBytes(h.Finish());
}

uint32_t SpecVersion(const CompactionSpec& spec) {
  const nlohmann::json j = nlohmann::json::parse(spec.ToJson(), nullptr, false);
  return j.is_object() && j.contains("version") && j["version"].is_number_unsigned()
             ? j["version"].get<uint32_t>()
             : 0;
}

std::string Hex16(const std::string& bytes) {
  const std::string hex =
      ToHex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  return hex.substr(0, 16);
}

}  // namespace

std::string DocumentKey::ToString() const {
  return kind + ":" + Hex16(block_hash) + "/" + Hex16(spec_hash);
}

std::vector<int32_t> ParseTokenIds(const std::string& text, int64_t count) {
  std::string_view s(text);
  if (s.starts_with("[") && s.ends_with("]")) s = s.substr(1, s.size() - 2);
  std::vector<int32_t> ids;
  while (!s.empty()) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    int32_t v = -1;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || v < 0) return {};
    ids.push_back(v);
    s.remove_prefix(static_cast<size_t>(end - s.data()));
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    if (s.empty()) break;
    if (s.front() != ',') return {};
    s.remove_prefix(1);
    if (s.empty()) return {};
  }
  if (static_cast<int64_t>(ids.size()) != count) return {};
  return ids;
}

Result<DocumentKey> KeyForDocument(const DumpInfo& dump, const CompactionSpec& spec,
                                   const std::string& tenant) {
  DocumentKey key;
  key.spec_hash = DigestBytes(Sha256::Hash(spec.ToJson()));
  auto tok = dump.metadata.find("tokens");
  auto model = dump.metadata.find("model");
  std::vector<int32_t> ids;
  if (tok != dump.metadata.end() && model != dump.metadata.end() && !model->second.empty()) {
    ids = ParseTokenIds(tok->second, dump.layout().tokens);
  }
  if (ids.empty()) {
    key.kind = "content_sha256";
    KVC_ASSIGN_OR_RETURN(key.block_hash, HashFile(dump.path));
    return key;
  }
  const PrefixSalt salt =
      PrefixSalt::ForLayout(model->second, dump.layout(), SpecVersion(spec), tenant);
  KVC_ASSIGN_OR_RETURN(std::vector<BlockHash> chain, HashPrefix(ids, salt));
  const std::span<const uint8_t> last = chain.back().digest();
  key.kind = "prefix_chain";
  key.block_hash.assign(last.begin(), last.end());
  key.tokens.assign(ids.begin(), ids.end());
  return key;
}

#ifdef KVC_BATCH_WITH_STORE

namespace {

class TieredBatchStore : public BatchStore {
 public:
  explicit TieredBatchStore(std::unique_ptr<storage::TieredStore> store)
      : store_(std::move(store)) {}

  Result<bool> Put(const DocumentKey& key, const std::string& output_path,
                   const std::map<std::string, std::string>& attributes,
                   bool only_if_absent) override {
    const storage::StoreKey k{key.block_hash, key.spec_hash};
    if (only_if_absent) {
      Result<storage::Manifest> m = store_->GetManifest(k);
      if (m.ok()) return false;
      if (!m.status().IsNotFound()) return m.status();
    }
    KVC_ASSIGN_OR_RETURN(CompactedCache cache, LoadCompactedCache(output_path));
    storage::EntryExtras extras;
    extras.source_tokens = key.tokens;
    extras.attributes = attributes;
    extras.attributes["key_kind"] = key.kind;
    KVC_RETURN_IF_ERROR(store_->Put(k, cache, extras));
    return true;
  }

 private:
  std::unique_ptr<storage::TieredStore> store_;
};

}  // namespace

Result<std::unique_ptr<BatchStore>> BatchStore::Open(const std::string& path) {
  storage::TieredStoreOptions o;
  o.warm.path = path;
  o.hot.capacity_bytes = 0;  // batch never reads back
  o.maintenance_interval = std::chrono::milliseconds(0);
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<storage::TieredStore> s, storage::TieredStore::Open(o));
  return std::unique_ptr<BatchStore>(new TieredBatchStore(std::move(s)));
}

#else

Result<std::unique_ptr<BatchStore>> BatchStore::Open(const std::string& path) {
  return Status::NotSupported(
      "--store " + path +
      ": this kvcompact was built without the store library (kvc_storage, built with "
      "KVC_BUILD_SERVICES=ON)");
}

#endif

}  // namespace kvc::cli
