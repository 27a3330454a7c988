// ThreadSanitizer suppressions for the tests that drive the store (storage, engine), built into
// the test executables.
//
// RocksDB comes from the distribution, not built with -fsanitize=thread: its lock-free write
// group commit and memtable skip list synchronise through atomics TSan cannot see, so the
// memcpy/memcmp/string accesses it makes through intercepted functions look like races. Only
// reports with a RocksDB frame are suppressed; races in kvcompact code still fail the run.
extern "C" const char* __tsan_default_suppressions() { return "race:rocksdb::\n"; }
