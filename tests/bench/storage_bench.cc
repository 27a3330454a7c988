// Storage benchmark (design §7: store put/get bytes/s at least 80% of raw RocksDB with the same
// options in the same binary).
//
//   put/get    TieredStore (warm tier only, hot tier off so every Get reads RocksDB) against a
//              raw RocksDB opened with the same DB and column-family options, writing the same
//              keys and bytes in one WriteBatch per entry (tensor blobs + a record of the
//              manifest's size + the age-index key) and reading them back with Get + MultiGet.
//              Entry sizes 1, 8 and 64 MB. After one untimed warm-up entry per side, the
//              operations of the two sides are interleaved pairwise (on a shared machine both
//              meet the same contention); the median over trials and the ratio store/raw are
//              printed.
//   lookup     LookupLongestPrefix p50/p99 over a million stored blocks. To keep the load
//              feasible on a small machine each block is a manifest-only entry (every head
//              budget 0, a 2-layer 2-head layout) loaded with sync off; chains of 128 blocks are
//              queried with 16 unstored blocks appended (129 probes, answer 128), and chains that
//              were never stored (1 probe).
//   hot hit    Get latency of an entry cached in the hot tier.
//
// Data lives under a temporary directory (or --dir) that is removed at the end.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "storage/format.h"
#include "storage/rocks_tier.h"
#include "storage/rocks_util.h"
#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace kvc::storage {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  bool quick = false;
  bool sync = true;
  std::string dir;
  std::vector<int> sizes_mb = {1, 8, 64};
  int trials = 5;
  size_t lookup_blocks = 1'000'000;
  size_t chain = 128;
  int lookups = 2000;
};

void Die(const Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "storage_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Percentile(std::vector<double>& sorted_us, double p) {
  const size_t i = std::min(sorted_us.size() - 1, static_cast<size_t>(p * sorted_us.size()));
  return sorted_us[i];
}

// Raw RocksDB with the store's options: the anchor.
class RawDb {
 public:
  RawDb(const RocksTierOptions& options, bool sync) : sync_(sync) {
    rocksdb::Status s = rocksdb::DB::Open(MakeDbOptions(options, true), options.path,
                                          MakeColumnFamilies(options), &handles_, &db_);
    Die(FromRocks(s, "raw open"), "raw open");
  }
  ~RawDb() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    delete db_;
  }

  // The same keys and bytes TieredStore writes for one entry, in one batch.
  void Put(const std::string& ekey, const EncodedEntry& e, int64_t now) {
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < e.blobs.size(); ++i) {
      batch.Put(handles_[2], BlobKey(ekey, static_cast<uint32_t>(i)),
                rocksdb::Slice(e.blobs[i].data(), e.blobs[i].size()));
    }
    batch.Put(handles_[1], ekey, EncodeTierRecord({now, 0, 0, 0, e.manifest}));
    batch.Put(handles_[3], AgeIndexKey(now, ekey), rocksdb::Slice());
    Die(FromRocks(db_->Write(MakeWriteOptions(sync_), &batch), "raw write"), "raw put");
  }

  // Reads the record and every blob; returns the blob bytes read.
  uint64_t Get(const std::string& ekey, size_t n_tensors) {
    rocksdb::PinnableSlice record;
    Die(FromRocks(db_->Get({}, handles_[1], ekey, &record), "raw get"), "raw get");
    std::vector<std::string> keys;
    for (size_t i = 0; i < n_tensors; ++i) keys.push_back(BlobKey(ekey, static_cast<uint32_t>(i)));
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(n_tensors);
    std::vector<rocksdb::Status> statuses(n_tensors);
    db_->MultiGet({}, handles_[2], n_tensors, slices.data(), values.data(), statuses.data());
    uint64_t bytes = 0;
    for (size_t i = 0; i < n_tensors; ++i) {
      Die(FromRocks(statuses[i], "raw multiget"), "raw get");
      bytes += values[i].size();
    }
    return bytes;
  }

  void Flush() { Die(FromRocks(db_->Flush({}, handles_), "raw flush"), "raw flush"); }

 private:
  bool sync_;
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

// Times one trial: n operations of each side, paired and interleaved (store i then raw i, or
// raw i then store i on alternate i), so both sides meet the same disk and CPU contention on a
// shared machine. Appends each side's total seconds.
template <typename Ours, typename Raw>
void TimeTrial(int n, Ours ours, Raw raw, std::vector<double>* ours_s, std::vector<double>* raw_s) {
  double ours_total = 0, raw_total = 0;
  auto time = [](auto& fn, int i) {
    const auto a = Clock::now();
    fn(i);
    return Seconds(a, Clock::now());
  };
  for (int i = 0; i < n; ++i) {
    if (i % 2 == 0) {
      ours_total += time(ours, i);
      raw_total += time(raw, i);
    } else {
      raw_total += time(raw, i);
      ours_total += time(ours, i);
    }
  }
  ours_s->push_back(ours_total);
  raw_s->push_back(raw_total);
}

void PrintRow(const char* op, int mb, int n, double ours_s, double raw_s, uint64_t bytes) {
  const double gb = static_cast<double>(bytes) * n / 1e9;
  std::printf(
      "%-4s %3d MB  store %6.3f GB/s %8.1f ops/s | raw %6.3f GB/s %8.1f ops/s | ratio %.2f\n", op,
      mb, gb / ours_s, n / ours_s, gb / raw_s, n / raw_s, raw_s / ours_s);
}

// One entry size: the store and the raw anchor side by side, each in its own directory.
class SizeBench {
 public:
  SizeBench(const Args& args, int mb, const std::filesystem::path& root)
      : args_(args),
        mb_(mb),
        n_(args.quick ? 2 : std::max(3, 64 / mb)),
        caches_{testing::MakeCacheOfSize(1, uint64_t(mb) << 20),
                testing::MakeCacheOfSize(2, uint64_t(mb) << 20)},
        payload_(testing::PayloadBytes(caches_[0])),
        n_tensors_(3 * caches_[0].layers.size()),
        store_(TieredStore::Open(StoreOptions(root)).value()),
        raw_(RawOptions(root), args.sync) {
    for (int i = 0; i < 2; ++i) encoded_[i] = EncodeEntry(caches_[i], {}, 0).value();
  }

  void Run() {
    // Warm-up, untimed: the first write and the first read of a database pay one-time costs.
    const StoreKey warm_up = testing::KeyFor(999'999);
    Die(store_->Put(warm_up, caches_[0]), "warm-up put");
    raw_.Put(EncodeStoreKey(warm_up), encoded_[0], 1);
    std::vector<double> ours_put, raw_put, ours_get, raw_get;
    for (int t = 0; t < args_.trials; ++t) {
      FlushBoth();  // both sides start each trial with empty memtables
      TimeTrial(
          n_, [&](int i) { Die(store_->Put(Key(t, i), caches_[i % 2]), "put"); },
          [&](int i) { raw_.Put(EncodeStoreKey(Key(t, i)), encoded_[i % 2], 1); }, &ours_put,
          &raw_put);
    }
    FlushBoth();  // reads come from SST and blob files, as for entries that are not brand new
    Die(store_->Get(warm_up).status(), "warm-up get");
    raw_.Get(EncodeStoreKey(warm_up), n_tensors_);
    std::mt19937 rng(mb_);
    std::vector<int> order(n_);
    for (int i = 0; i < n_; ++i) order[i] = i;
    for (int t = 0; t < args_.trials; ++t) {
      std::shuffle(order.begin(), order.end(), rng);
      TimeTrial(
          n_, [&](int i) { Die(store_->Get(Key(t, order[i])).status(), "get"); },
          [&](int i) {
            if (raw_.Get(EncodeStoreKey(Key(t, order[i])), n_tensors_) != payload_) {
              Die(Status::Internal("short read"), "raw get");
            }
          },
          &ours_get, &raw_get);
    }
    PrintRow("put", mb_, n_, Median(ours_put), Median(raw_put), payload_);
    PrintRow("get", mb_, n_, Median(ours_get), Median(raw_get), payload_);
    std::fflush(stdout);
  }

 private:
  TieredStoreOptions StoreOptions(const std::filesystem::path& root) const {
    TieredStoreOptions o;
    o.warm.path = (root / ("store-" + std::to_string(mb_))).string();
    o.hot.capacity_bytes = 0;  // every Get reads RocksDB
    o.sync = args_.sync;
    o.maintenance_interval = std::chrono::milliseconds(0);
    return o;
  }
  // The store's warm options, another directory.
  RocksTierOptions RawOptions(const std::filesystem::path& root) const {
    RocksTierOptions o = StoreOptions(root).warm;
    o.path = (root / ("raw-" + std::to_string(mb_))).string();
    return o;
  }
  static StoreKey Key(int trial, int i) { return testing::KeyFor(uint64_t(trial) * 1000 + i); }
  void FlushBoth() {
    Die(store_->Flush(), "flush");
    raw_.Flush();
  }

  const Args& args_;
  const int mb_;
  const int n_;  // entries per trial
  const CompactedCache caches_[2];
  const uint64_t payload_;
  const size_t n_tensors_;
  EncodedEntry encoded_[2];  // views caches_
  std::unique_ptr<TieredStore> store_;
  RawDb raw_;
};

void BenchLookup(const Args& args, const std::filesystem::path& root) {
  const size_t chains = std::max<size_t>(1, args.lookup_blocks / args.chain);
  TieredStoreOptions o;
  o.warm.path = (root / "lookup").string();
  o.sync = false;  // bulk load; lookups do not write
  o.maintenance_interval = std::chrono::milliseconds(0);
  auto store = TieredStore::Open(o).value();
  testing::CacheShape shape;
  shape.fixed_budget = 0;  // manifest-only entries
  const CompactedCache empty = testing::MakeCache(0, shape);
  const auto a = Clock::now();
  for (size_t c = 0; c < chains; ++c) {
    for (const std::string& block : testing::ChainFor(c, args.chain)) {
      Die(store->Put({block, "spec"}, empty), "lookup load");
    }
  }
  Die(store->Flush(), "flush");
  const double load_s = Seconds(a, Clock::now());
  std::mt19937_64 rng(3);
  std::vector<double> hit_us, miss_us;
  for (int q = 0; q < args.lookups; ++q) {
    const std::vector<std::string> chain = testing::ChainFor(rng() % chains, args.chain + 16);
    auto b = Clock::now();
    Result<PrefixMatch> m = store->LookupLongestPrefix(chain, "spec");
    hit_us.push_back(Seconds(b, Clock::now()) * 1e6);
    if (!m.ok() || m->length != args.chain) Die(Status::Internal("wrong prefix length"), "lookup");
    const std::vector<std::string> absent = testing::ChainFor(chains + q, 4);
    b = Clock::now();
    if (!store->LookupLongestPrefix(absent, "spec").status().IsNotFound()) {
      Die(Status::Internal("absent chain found"), "lookup");
    }
    miss_us.push_back(Seconds(b, Clock::now()) * 1e6);
  }
  std::sort(hit_us.begin(), hit_us.end());
  std::sort(miss_us.begin(), miss_us.end());
  std::printf(
      "lookup: %zu blocks stored (manifest-only entries, loaded with sync off in %.1f s, "
      "%.0f puts/s)\n",
      chains * args.chain, load_s, chains * args.chain / load_s);
  std::printf("lookup chain %zu stored + 16 unstored: p50 %.1f us  p99 %.1f us  (%.2f us/block)\n",
              args.chain, Percentile(hit_us, 0.5), Percentile(hit_us, 0.99),
              Percentile(hit_us, 0.5) / (args.chain + 1));
  std::printf("lookup chain never stored:          p50 %.1f us  p99 %.1f us\n",
              Percentile(miss_us, 0.5), Percentile(miss_us, 0.99));
}

void BenchHotHit(const Args& args, const std::filesystem::path& root) {
  TieredStoreOptions o;
  o.warm.path = (root / "hot").string();
  o.sync = args.sync;
  o.maintenance_interval = std::chrono::milliseconds(0);
  auto store = TieredStore::Open(o).value();
  const StoreKey key = testing::KeyFor(7);
  Die(store->Put(key, testing::MakeCacheOfSize(7, 1 << 20)), "hot put");
  Die(store->Get(key).status(), "hot warm-up");  // warm read, now cached in hot
  const int n = args.quick ? 1000 : 100000;
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto a = Clock::now();
    Result<CompactedCache> got = store->Get(key);
    us.push_back(Seconds(a, Clock::now()) * 1e6);
    if (!got.ok()) Die(got.status(), "hot get");
  }
  std::sort(us.begin(), us.end());
  const StoreStats s = store->Stats();
  std::printf("hot hit (1 MB entry, 8 layers): p50 %.2f us  p99 %.2f us  (hot hits %llu)\n",
              Percentile(us, 0.5), Percentile(us, 0.99),
              static_cast<unsigned long long>(s.hot.hits));
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return arg.compare(0, n, name) == 0 ? argv[i] + n : nullptr;
    };
    if (arg == "--quick") {
      a.quick = true;
      a.sizes_mb = {1};
      a.trials = 1;
      a.lookup_blocks = 20000;
      a.lookups = 200;
    } else if (const char* v = value("--sync=")) {
      a.sync = std::atoi(v) != 0;
    } else if (const char* v = value("--dir=")) {
      a.dir = v;
    } else if (const char* v = value("--sizes=")) {
      a.sizes_mb.clear();
      for (const char* p = v; *p;) {
        a.sizes_mb.push_back(std::atoi(p));
        p = std::strchr(p, ',') ? std::strchr(p, ',') + 1 : p + std::strlen(p);
      }
    } else if (const char* v = value("--trials=")) {
      a.trials = std::max(1, std::atoi(v));
    } else if (const char* v = value("--lookup-blocks=")) {
      a.lookup_blocks = std::strtoull(v, nullptr, 10);
    } else {
      std::printf(
          "usage: %s [--quick] [--sync=0|1] [--dir=PATH] [--sizes=1,8,64] [--trials=3] "
          "[--lookup-blocks=1000000]\n",
          argv[0]);
      std::exit(arg == "--help" ? 0 : 2);
    }
  }
  return a;
}

int Main(int argc, char** argv) {
  const Args args = Parse(argc, argv);
  const std::filesystem::path root = (args.dir.empty() ? std::filesystem::temp_directory_path()
                                                       : std::filesystem::path(args.dir)) /
                                     ("kvc-storage-bench-" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  std::printf("storage_bench: sync=%d trials=%d dir=%s\n", args.sync, args.trials, root.c_str());
  for (int mb : args.sizes_mb) SizeBench(args, mb, root).Run();
  BenchLookup(args, root);
  BenchHotHit(args, root);
  std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace kvc::storage

int main(int argc, char** argv) { return kvc::storage::Main(argc, argv); }
