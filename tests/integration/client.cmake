# The client library and the kvcompact CLI against kvcompactd processes on loopback (label
# "integration"): round trips, prefix reuse, bad input, concurrent clients, kill -9 and SIGSTOP
# of a worker, UCX restricted to tcp or shm. Included by tests/integration/CMakeLists.txt after
# worker.cmake (it needs kvc_worker_process).
if(NOT KVC_BUILD_TESTS OR NOT TARGET kvc_worker_process)
  return()
endif()

add_library(kvc_client_cluster STATIC ${CMAKE_CURRENT_LIST_DIR}/client_cluster.cc)
target_link_libraries(kvc_client_cluster PUBLIC kvc_worker_process kvc_client kvc_storage_testing)

kvc_add_test(client_integration_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/client_integration_test.cc
  LIBS kvc_client_cluster kvc_cli_lib kvc_engine_testing kvc_transport_testing
  LABELS integration)

kvc_add_test(client_transport_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/client_transport_test.cc
  LIBS kvc_client_cluster kvc_engine_testing kvc_transport_testing
  LABELS integration)

kvc_add_test(multiworker_failover_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/multiworker_failover_test.cc
  LIBS kvc_client_cluster kvc_engine_testing
  LABELS integration)
