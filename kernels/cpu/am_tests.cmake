# Tests of the AM / front work: spec, compactor front, fidelity, Attention Matching, linalg and
# the thread pool.
kvc_add_test(kernels_am_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/../spec_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/../fidelity_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/../compactor_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/attention_matching_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/linalg_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/thread_pool_test.cc
  LIBS kvc_kernels)

# AM against every selection-only method on the synthetic generator (kvc_synth is defined in
# tests/synth, configured after kernels/; the name resolves at generation time).
kvc_add_test(kernels_am_quality_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/../am_vs_baselines_test.cc
  LIBS kvc_kernels kvc_synth)
