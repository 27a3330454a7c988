include_guard(GLOBAL)

# kvc_add_test(NAME SOURCES a.cc b.cc LIBS x y [LABELS l])
# One gtest executable registered with ctest test by test (discovered when ctest runs), with one
# ctest label (default: unit). gtest_discover_tests flattens its PROPERTIES list before the tests
# exist, so a list of labels would reach ctest as one label and a bogus property: one is allowed.
function(kvc_add_test name)
  if(NOT KVC_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  include(GoogleTest)
  set(_labels unit)
  if(T_LABELS)
    list(LENGTH T_LABELS _count)
    if(_count GREATER 1)
      message(FATAL_ERROR "kvc_add_test(${name}): one label only, got '${T_LABELS}'")
    endif()
    set(_labels ${T_LABELS})
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${_labels}"
                       ENVIRONMENT "KVC_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
