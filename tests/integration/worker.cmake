# kvcompactd as a child process: the WorkerProcess helper (usable by other integration tests)
# and the worker's own smoke tests.
if(NOT KVC_BUILD_TESTS)
  return()
endif()

add_library(kvc_worker_process STATIC ${CMAKE_CURRENT_LIST_DIR}/worker_process.cc)
target_link_libraries(kvc_worker_process PUBLIC kvc_common)
add_dependencies(kvc_worker_process kvcompactd)
target_compile_definitions(kvc_worker_process PRIVATE
  KVC_KVCOMPACTD="$<TARGET_FILE:kvcompactd>")

kvc_add_test(worker_smoke_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/worker_smoke_test.cc
  LIBS kvc_worker_process kvc_rpc kvc_rpc_testing kvc_engine_testing kvc_transport
  LABELS integration)
