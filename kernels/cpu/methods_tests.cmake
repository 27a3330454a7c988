# Tests of the eviction methods, budget allocators and selection (kernels/cpu, methods.cmake).
kvc_add_test(kernels_methods_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/attention_scores_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/budgets_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/d2o_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/dynamickv_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/h2o_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/methods_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/okdmd_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/pyramidkv_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/select_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/snapkv_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/streaming_llm_test.cc
  LIBS kvc_kernels)

# OK-DMD vs H2O "mean attention coherence" on a domain shift and return (design §4).
kvc_add_test(kernels_okdmd_coherence_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/okdmd_coherence_test.cc
  LIBS kvc_kernels kvc_synth kvc_harness)
