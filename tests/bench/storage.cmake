# Storage benchmark: TieredStore against raw RocksDB with the same options, in one binary.
# Run: build/tests/bench/storage_bench [--quick] [--sync=0|1] [--dir=PATH] (see --help).
add_executable(storage_bench ${CMAKE_CURRENT_LIST_DIR}/storage_bench.cc)
target_link_libraries(storage_bench PRIVATE kvc_storage kvc_storage_testing RocksDB::rocksdb)
# A seconds-long smoke run so the benchmark keeps building and running; excluded from the unit
# label (ctest -L bench runs it).
add_test(NAME storage_bench_smoke COMMAND storage_bench --quick)
set_tests_properties(storage_bench_smoke PROPERTIES LABELS bench TIMEOUT 300)
