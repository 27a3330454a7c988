// `kvcompact batch --store PATH`: puts each compacted document into a TieredStore
// (storage/tiered_store.h, warm tier at PATH) under the key of design §3.
//
// Key of a document:
//   block hash  when the dump's metadata carries "tokens" as T token ids ("1,2,3" or
//               "[1,2,3]", T = the dump's token count) and a "model": the last link of the
//               prefix hash chain (SHA-256, blocks of 256) of those tokens, salted with the
//               model, the KV layout, the spec version (CompactionSpec::ToJson's "version")
//               and the tenant; otherwise the SHA-256 of the dump file's bytes.
//   spec hash   SHA-256 of CompactionSpec::ToJson().
// The entry's extras carry the token ids (when they made the key) and the attributes "model",
// "source" (file name), "key_kind" ("prefix_chain" or "content_sha256") and "batch_plan".
//
// The store library exists only in builds with KVC_BUILD_SERVICES; elsewhere BatchStore::Open
// returns NotSupported. Key computation is available in every build.
//
// Memory: a put loads the whole compacted cache (RocksDB then copies it into its write batch),
// about twice the output's size; the planner counts that when --store is given.
//
// Thread safety: a BatchStore may be used from several threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/spec.h"
#include "services/cli/batch_source.h"

namespace kvc::cli {

struct DocumentKey {
  std::string block_hash;        // raw digest bytes
  std::string spec_hash;         // raw digest bytes
  std::string kind;              // "prefix_chain" or "content_sha256"
  std::vector<uint32_t> tokens;  // the token ids when kind == "prefix_chain"
  // "<kind>:<first 16 hex of block hash>/<first 16 hex of spec hash>"
  std::string ToString() const;
};

// The key of a document (see above). IOError when the file cannot be read for hashing.
Result<DocumentKey> KeyForDocument(const DumpInfo& dump, const CompactionSpec& spec,
                                   const std::string& tenant);

// Parses metadata "tokens" as exactly `count` non-negative token ids ("1,2,3" or "[1,2,3]");
// an empty vector when the text is anything else (a count, a hash, a different length).
std::vector<int32_t> ParseTokenIds(const std::string& text, int64_t count);

class BatchStore {
 public:
  // Opens (creating) the store with its warm tier at `path`. NotSupported when this build has
  // no store library; the store's errors otherwise.
  static Result<std::unique_ptr<BatchStore>> Open(const std::string& path);
  virtual ~BatchStore() = default;

  // Puts the compacted cache at `output_path` under `key` (replacing an entry of that key);
  // with `only_if_absent`, does nothing when the key is already stored. Returns whether it put.
  // `attributes` go into the entry's extras. Errors: the loader's for the file, the store's.
  virtual Result<bool> Put(const DocumentKey& key, const std::string& output_path,
                           const std::map<std::string, std::string>& attributes,
                           bool only_if_absent) = 0;
};

}  // namespace kvc::cli
