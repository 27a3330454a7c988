# kvcompact put | lookup | fetch | stats (services/cli/remote.h): the client library from the
# command line. Included by services/cli/CMakeLists.txt after kvc_cli_lib, which links it. The
# client library (kvc_client) exists only with KVC_BUILD_SERVICES; without it the commands are
# registered but say so (remote_unavailable.cc).
if(KVC_BUILD_SERVICES)
  add_library(kvc_cli_remote STATIC remote_command.cc remote_tokens.cc remote_run.cc)
  target_link_libraries(kvc_cli_remote
    PUBLIC kvc_common CLI11::CLI11
    PRIVATE kvc_client nlohmann_json::nlohmann_json)
  kvc_add_test(cli_remote_test
    SOURCES remote_test.cc
    LIBS kvc_cli_lib kvc_cli_remote kvc_client_testing kvc_transport_testing)
else()
  add_library(kvc_cli_remote STATIC remote_command.cc remote_tokens.cc remote_unavailable.cc)
  target_link_libraries(kvc_cli_remote PUBLIC kvc_common CLI11::CLI11)
endif()
target_link_libraries(kvc_cli_lib PUBLIC kvc_cli_remote)
