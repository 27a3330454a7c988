// Fuzzes the config decoder: Config::Parse, typed lookups and the unknown-key walk.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  kvc::Result<kvc::Config> c = kvc::Config::Parse(text, "fuzz");
  if (!c.ok()) return 0;
  for (const char* key : {"a", "a.b", "server.port", "x..y", "a.b.c.d"}) {
    c->GetInt(key, 0).status().IgnoreError();
    c->GetDouble(key, 0).status().IgnoreError();
    c->GetString(key, "").status().IgnoreError();
    c->GetBool(key, false).status().IgnoreError();
    (void)c->Has(key);
  }
  const std::vector<std::string> known = {"a.b", "server.port", "server", "x.y.z"};
  (void)c->UnknownKeys(known);
  c->CheckKnownKeys(known).IgnoreError();
  return 0;
}
