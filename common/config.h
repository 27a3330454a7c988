// Service configuration: a JSON file read into an immutable Config with typed lookups by dotted
// path ("server.port" is member "port" of object "server"; keys that contain a dot cannot be
// addressed). A missing key yields the caller's default; a present key of the wrong type is an
// error, never silently the default (JSON null counts as present, of type null).
//
// Errors: NotFound (no such file), IOError (unreadable), InvalidArgument for JSON syntax errors
// (with line and column), duplicate keys, a top level that is not an object, and lookups of the
// wrong type (naming the key, the expected type and what was found). Comments (// and /* */)
// are allowed in config files.
//
// Thread safety: Config is immutable; copies share the parsed document; concurrent calls are
// safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvc {

class Config {
 public:
  // An empty configuration: every lookup returns its default.
  Config();

  static Result<Config> LoadFile(const std::string& path);
  // `source` names the text in error messages (e.g. the path it came from).
  static Result<Config> Parse(std::string_view json_text, std::string_view source = "<config>");

  // Typed lookups. Missing -> `default_value`. InvalidArgument if the key is present with another
  // type, if an element on its path is not an object, or if the key is malformed (empty segment).
  // GetInt accepts JSON integers only (not 8.0) within int64; GetDouble accepts any number.
  Result<int64_t> GetInt(std::string_view key, int64_t default_value) const;
  Result<double> GetDouble(std::string_view key, double default_value) const;
  Result<std::string> GetString(std::string_view key, std::string default_value) const;
  Result<bool> GetBool(std::string_view key, bool default_value) const;

  // True if the dotted key resolves to a value (of any type, null included).
  bool Has(std::string_view key) const;

  // Dotted paths present in the file but not known, sorted. A path is known if it is in `known`
  // (its whole subtree is then accepted, which suits free-form maps) or if it is an object and
  // some known path lies beneath it (its members are then checked one by one). An unknown
  // object is reported once, not member by member.
  std::vector<std::string> UnknownKeys(std::span<const std::string> known) const;
  // OK, or InvalidArgument listing the unknown keys (for services that reject typos).
  Status CheckKnownKeys(std::span<const std::string> known) const;

  // The path or source name given at load time.
  const std::string& source() const;

 private:
  struct Impl;
  explicit Config(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace kvc
