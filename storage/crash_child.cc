// Child process of the crash test (crash_test.cc). Opens the store, then writes and deletes
// entries forever, reporting on stdout (one short line per write(2), atomic on a pipe):
//   "R"      the store is open
//   "p <i>"  about to Put key i        "P <i>"  Put(i) returned OK
//   "d <i>"  about to Delete key i     "D <i>"  Delete(i) returned (the key is now absent)
// The parent kills it with SIGKILL at a random moment and checks what a reopened store holds.
//
// Usage: storage_crash_child <warm path> <cold path> <first key> <seed>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "storage/crash_shape.h"
#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace {

void Report(char tag, uint64_t key) {
  char line[32];
  const int n =
      std::snprintf(line, sizeof(line), "%c %llu\n", tag, static_cast<unsigned long long>(key));
  if (::write(STDOUT_FILENO, line, n) != n) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvc::storage;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <warm> <cold> <first key> <seed>\n", argv[0]);
    return 2;
  }
  const uint64_t first = std::strtoull(argv[3], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
  kvc::Result<std::unique_ptr<TieredStore>> opened =
      TieredStore::Open(CrashTestOptions(argv[1], argv[2]));
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  TieredStore& store = **opened;
  if (::write(STDOUT_FILENO, "R\n", 2) != 2) return 3;
  for (uint64_t key = first;; ++key) {
    if (key > 0 && rng() % 5 == 0) {
      const uint64_t victim = rng() % key;
      Report('d', victim);
      const kvc::Status s = store.Delete(testing::KeyFor(victim));
      if (!s.ok() && !s.IsNotFound()) {
        std::fprintf(stderr, "delete: %s\n", s.ToString().c_str());
        return 1;
      }
      Report('D', victim);
    }
    if (key > 0 && rng() % 4 == 0) {
      // Reading an old key promotes it from cold: a move the kill may interrupt.
      store.Get(testing::KeyFor(rng() % key)).status().IgnoreError();
    }
    Report('p', key);
    const kvc::Status s = store.Put(testing::KeyFor(key), CrashTestCache(key));
    if (!s.ok()) {
      std::fprintf(stderr, "put: %s\n", s.ToString().c_str());
      return 1;
    }
    Report('P', key);
  }
}
