# kvcompact batch: offline compaction of a directory of dumps (services/cli/batch.h). Included by
# services/cli/CMakeLists.txt after kvc_cli_lib, which links it.
add_library(kvc_cli_batch STATIC
  batch_command.cc
  batch_document.cc
  batch_group.cc
  batch_plan.cc
  batch_progress.cc
  batch_report.cc
  batch_runner.cc
  batch_source.cc
  batch_store.cc
  batch_writer.cc
  spec_args.cc  # BuildSpec, shared with `compact` (kvc_cli_lib links this library)
)
target_link_libraries(kvc_cli_batch
  PUBLIC kvc_kernels kvc_common CLI11::CLI11
  PRIVATE nlohmann_json::nlohmann_json Threads::Threads)
if(TARGET kvc_storage)
  target_link_libraries(kvc_cli_batch PRIVATE kvc_storage)
  target_compile_definitions(kvc_cli_batch PRIVATE KVC_BATCH_WITH_STORE=1)
endif()
# services/cli is configured before services/client, so the client is detected by its folder.
if(KVC_BUILD_SERVICES AND EXISTS ${PROJECT_SOURCE_DIR}/services/client/CMakeLists.txt)
  target_compile_definitions(kvc_cli_batch PRIVATE KVC_BATCH_HAVE_CLIENT=1)
endif()
target_link_libraries(kvc_cli_lib PUBLIC kvc_cli_batch)

# Tests. batch_testing holds the helpers: streamed synthetic dumps and child processes.
if(KVC_BUILD_TESTS)
  add_library(kvc_cli_batch_testing STATIC batch_testing.cc)
  target_link_libraries(kvc_cli_batch_testing
    PUBLIC kvc_synth kvc_common PRIVATE nlohmann_json::nlohmann_json)
  target_compile_definitions(kvc_cli_batch_testing PRIVATE
    KVC_KVCOMPACT_BIN="$<TARGET_FILE:kvcompact>")
endif()
kvc_add_test(batch_test
  SOURCES batch_plan_test.cc batch_writer_test.cc batch_document_test.cc batch_runner_test.cc
  LIBS kvc_cli_lib kvc_cli_batch kvc_synth nlohmann_json::nlohmann_json)
kvc_add_test(batch_process_test
  SOURCES batch_process_test.cc
  LIBS kvc_cli_batch kvc_cli_batch_testing nlohmann_json::nlohmann_json)
if(TARGET batch_test AND TARGET kvc_storage)
  target_link_libraries(batch_test PRIVATE kvc_storage)
  target_compile_definitions(batch_test PRIVATE KVC_BATCH_WITH_STORE=1)
endif()
if(TARGET batch_process_test)
  add_dependencies(batch_process_test kvcompact)
endif()
