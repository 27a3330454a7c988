#include "common/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

namespace kvc {

using Json = nlohmann::json;

struct Config::Impl {
  Json doc = Json::object();
  std::string source = "<empty>";
};

namespace {

// Config files are shallow; deeper nesting is rejected so that walking the tree stays cheap.
constexpr int kMaxDepth = 64;
struct TooDeep {};  // thrown from the parser callback only; caught in ParseJson

// 1-based line and column of the byte at 0-based offset `pos`.
std::pair<size_t, size_t> LineColumn(std::string_view text, size_t pos) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

Status ParseJson(std::string_view text, const std::string& source, Json* out) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto cb = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxDepth) throw TooDeep{};
    if (event == Json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == Json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == Json::parse_event_t::key && !open_objects.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  try {
    *out = Json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true,
                       /*ignore_comments=*/true);
  } catch (const TooDeep&) {
    return Status::InvalidArgument(source + ": nesting deeper than " + std::to_string(kMaxDepth) +
                                   " levels");
  } catch (const Json::parse_error& e) {
    // e.byte is the 1-based position of the character where parsing stopped.
    auto [line, column] = LineColumn(text, e.byte > 0 ? e.byte - 1 : 0);
    return Status::InvalidArgument(source + ":" + std::to_string(line) + ":" +
                                   std::to_string(column) + ": invalid JSON: " + e.what());
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(source + ": invalid JSON: " + e.what());
  }
  if (!duplicate.empty()) {
    return Status::InvalidArgument(source + ": duplicate key '" + duplicate + "'");
  }
  if (!out->is_object()) {
    return Status::InvalidArgument(source + ": the top level must be a JSON object, got " +
                                   out->type_name());
  }
  return Status::OK();
}

std::string Describe(const Json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  const char* type = v.is_number_integer() ? "integer"
                     : v.is_number_float() ? "float"
                                           : v.type_name();
  return std::string(type) + " " + text;
}

// Finds `key`; *out is null when it is missing.
Status Resolve(const Json& doc, const std::string& source, std::string_view key, const Json** out) {
  *out = nullptr;
  const Json* cur = &doc;
  size_t begin = 0;
  while (true) {
    const size_t dot = key.find('.', begin);
    const std::string_view segment =
        key.substr(begin, dot == std::string_view::npos ? std::string_view::npos : dot - begin);
    if (segment.empty()) {
      return Status::InvalidArgument(source + ": malformed config key '" + std::string(key) + "'");
    }
    if (!cur->is_object()) {
      return Status::InvalidArgument(
          source + ": config key '" + std::string(key.substr(0, begin - 1)) + "' is " +
          Describe(*cur) + ", expected an object (looking up '" + std::string(key) + "')");
    }
    auto it = cur->find(segment);
    if (it == cur->end()) return Status::OK();
    cur = &*it;
    if (dot == std::string_view::npos) break;
    begin = dot + 1;
  }
  *out = cur;
  return Status::OK();
}

Status WrongType(const std::string& source, std::string_view key, const char* expected,
                 const Json& v) {
  return Status::InvalidArgument(source + ": config key '" + std::string(key) + "' must be " +
                                 expected + ", got " + Describe(v));
}

bool HasKnownBelow(const std::set<std::string, std::less<>>& known, const std::string& path) {
  const std::string prefix = path + ".";
  auto it = known.lower_bound(prefix);
  return it != known.end() && it->starts_with(prefix);
}

void CollectUnknown(const Json& obj, const std::string& prefix,
                    const std::set<std::string, std::less<>>& known,
                    std::vector<std::string>* out) {
  for (const auto& [k, v] : obj.items()) {
    const std::string path = prefix.empty() ? k : prefix + "." + k;
    if (known.contains(path)) continue;
    if (v.is_object() && HasKnownBelow(known, path)) {
      CollectUnknown(v, path, known, out);
    } else {
      out->push_back(path);
    }
  }
}

Result<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such config file");
    return Status::IOError("open " + path + ": " + std::generic_category().message(err));
  }
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      return Status::IOError("read " + path + ": " + std::generic_category().message(err));
    }
    if (r == 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return text;
}

}  // namespace

Config::Config() : impl_(std::make_shared<const Impl>()) {}

Result<Config> Config::Parse(std::string_view json_text, std::string_view source) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::string(source);
  KVC_RETURN_IF_ERROR(ParseJson(json_text, impl->source, &impl->doc));
  return Config(std::move(impl));
}

Result<Config> Config::LoadFile(const std::string& path) {
  KVC_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return Parse(text, path);
}

const std::string& Config::source() const { return impl_->source; }

bool Config::Has(std::string_view key) const {
  const Json* v = nullptr;
  return Resolve(impl_->doc, impl_->source, key, &v).ok() && v != nullptr;
}

Result<int64_t> Config::GetInt(std::string_view key, int64_t default_value) const {
  const Json* v = nullptr;
  KVC_RETURN_IF_ERROR(Resolve(impl_->doc, impl_->source, key, &v));
  if (v == nullptr) return default_value;
  if (!v->is_number_integer()) return WrongType(impl_->source, key, "an integer", *v);
  if (v->is_number_unsigned() &&
      v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Status::InvalidArgument(impl_->source + ": config key '" + std::string(key) +
                                   "' = " + v->dump() + " does not fit in a 64-bit integer");
  }
  return v->get<int64_t>();
}

Result<double> Config::GetDouble(std::string_view key, double default_value) const {
  const Json* v = nullptr;
  KVC_RETURN_IF_ERROR(Resolve(impl_->doc, impl_->source, key, &v));
  if (v == nullptr) return default_value;
  if (!v->is_number()) return WrongType(impl_->source, key, "a number", *v);
  return v->get<double>();
}

Result<std::string> Config::GetString(std::string_view key, std::string default_value) const {
  const Json* v = nullptr;
  KVC_RETURN_IF_ERROR(Resolve(impl_->doc, impl_->source, key, &v));
  if (v == nullptr) return default_value;
  if (!v->is_string()) return WrongType(impl_->source, key, "a string", *v);
  return v->get<std::string>();
}

Result<bool> Config::GetBool(std::string_view key, bool default_value) const {
  const Json* v = nullptr;
  KVC_RETURN_IF_ERROR(Resolve(impl_->doc, impl_->source, key, &v));
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) return WrongType(impl_->source, key, "a boolean (true/false)", *v);
  return v->get<bool>();
}

std::vector<std::string> Config::UnknownKeys(std::span<const std::string> known) const {
  const std::set<std::string, std::less<>> known_set(known.begin(), known.end());
  std::vector<std::string> out;
  CollectUnknown(impl_->doc, "", known_set, &out);
  std::sort(out.begin(), out.end());
  return out;
}

Status Config::CheckKnownKeys(std::span<const std::string> known) const {
  const std::vector<std::string> unknown = UnknownKeys(known);
  if (unknown.empty()) return Status::OK();
  std::string list;
  for (const std::string& k : unknown) list += (list.empty() ? "'" : ", '") + k + "'";
  return Status::InvalidArgument(impl_->source + ": unknown config key(s) " + list +
                                 " (check the spelling)");
}

}  // namespace kvc
