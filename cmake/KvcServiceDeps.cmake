# Dependencies of the worker side of kvcompact (idl, rpc, engine, worker): the Thrift library and
# compiler, and the Boost headers (Asio, Beast). Included from services/CMakeLists.txt when
# KVC_BUILD_SERVICES is ON; a missing package stops configure with the apt package to install
# (kvc_missing from KvcDependencies.cmake).
include_guard(GLOBAL)

pkg_check_modules(THRIFT QUIET IMPORTED_TARGET thrift)
if(NOT THRIFT_FOUND)
  kvc_missing("Thrift C++ library (pkg-config thrift)" libthrift-dev)
endif()
find_program(KVC_THRIFT_COMPILER thrift)
if(NOT KVC_THRIFT_COMPILER)
  kvc_missing("Thrift compiler (thrift)" thrift-compiler)
endif()
execute_process(COMMAND ${KVC_THRIFT_COMPILER} --version OUTPUT_VARIABLE _kvc_thrift_version
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _kvc_thrift_version MATCHES "Thrift version ([0-9]+\\.[0-9]+)")
  kvc_missing("a working Thrift compiler (got '${_kvc_thrift_version}')" thrift-compiler)
endif()
if(CMAKE_MATCH_1 VERSION_LESS 0.13)
  kvc_missing("Thrift compiler >= 0.13 (found ${CMAKE_MATCH_1})" thrift-compiler)
endif()

find_package(Boost 1.74 QUIET CONFIG)
if(NOT Boost_FOUND)
  find_package(Boost 1.74 QUIET)
endif()
if(NOT Boost_FOUND)
  kvc_missing("Boost >= 1.74 headers (Asio, Beast)" libboost-dev)
endif()
if(NOT TARGET Boost::headers)
  add_library(Boost::headers INTERFACE IMPORTED)
  target_include_directories(Boost::headers INTERFACE ${Boost_INCLUDE_DIRS})
endif()
