list(APPEND KVC_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/attention_scores.cc
  ${CMAKE_CURRENT_LIST_DIR}/budgets.cc
  ${CMAKE_CURRENT_LIST_DIR}/d2o.cc
  ${CMAKE_CURRENT_LIST_DIR}/dynamickv.cc
  ${CMAKE_CURRENT_LIST_DIR}/h2o.cc
  ${CMAKE_CURRENT_LIST_DIR}/methods.cc
  ${CMAKE_CURRENT_LIST_DIR}/okdmd.cc
  ${CMAKE_CURRENT_LIST_DIR}/pyramidkv.cc
  ${CMAKE_CURRENT_LIST_DIR}/select.cc
  ${CMAKE_CURRENT_LIST_DIR}/snapkv.cc
  ${CMAKE_CURRENT_LIST_DIR}/streaming_llm.cc
)
