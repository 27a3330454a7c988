# UCX upload bandwidth of services/transport against ucx_perftest tag_bw (design §7 target:
# at least 90% of perftest, same size, same transport, same machine). Run: transport_bw
# (options: transport_bw --help). The smoke test runs a short version of the same comparison.
add_executable(transport_bw ${CMAKE_CURRENT_LIST_DIR}/transport_bw.cc)
target_link_libraries(transport_bw PRIVATE kvc_transport)
find_program(KVC_UCX_PERFTEST ucx_perftest)
if(KVC_UCX_PERFTEST)
  target_compile_definitions(transport_bw PRIVATE KVC_UCX_PERFTEST="${KVC_UCX_PERFTEST}")
endif()
add_test(NAME transport_bw_smoke COMMAND transport_bw --quick)
set_tests_properties(transport_bw_smoke PROPERTIES LABELS "bench" TIMEOUT 300)
