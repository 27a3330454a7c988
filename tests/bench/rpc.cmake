# RPC benchmark: the client library against one local kvcompactd (Thrift lookup p50/p99, compaction
# requests per second with 1, 4 and 16 concurrent clients, inline and UCX). Run:
# build/tests/bench/rpc_bench [--quick] [--seconds S] [--clients 1,4,16] (see its header).
# Included by tests/bench/CMakeLists.txt with KVC_BUILD_SERVICES.
add_executable(rpc_bench ${CMAKE_CURRENT_LIST_DIR}/rpc_bench.cc)
target_link_libraries(rpc_bench PRIVATE kvc_client kvc_engine_testing)
target_compile_definitions(rpc_bench PRIVATE KVC_KVCOMPACTD="$<TARGET_FILE:kvcompactd>")
add_dependencies(rpc_bench kvcompactd)
# A seconds-long run so the benchmark keeps building and working (ctest -L bench).
add_test(NAME rpc_bench_smoke COMMAND rpc_bench --quick)
set_tests_properties(rpc_bench_smoke PROPERTIES LABELS bench TIMEOUT 300)
