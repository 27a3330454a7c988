# Sources owned by the AM / front work: spec, the compactor front and its stages, fidelity,
# Attention Matching (selection, OMP, allocator), the linear-algebra wrappers and the thread pool.
list(APPEND KVC_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/../spec.cc
  ${CMAKE_CURRENT_LIST_DIR}/../compactor.cc
  ${CMAKE_CURRENT_LIST_DIR}/../fidelity.cc
  ${CMAKE_CURRENT_LIST_DIR}/compact_stages.cc
  ${CMAKE_CURRENT_LIST_DIR}/attention_matching.cc
  ${CMAKE_CURRENT_LIST_DIR}/am_omp.cc
  ${CMAKE_CURRENT_LIST_DIR}/am_allocator.cc
  ${CMAKE_CURRENT_LIST_DIR}/linalg.cc
  ${CMAKE_CURRENT_LIST_DIR}/thread_pool.cc
)

# The row loops over n x T score matrices (exp, softmax, reductions) are vectorised with OpenMP
# simd pragmas (no OpenMP runtime) at -O3. -fno-trapping-math lets GCC if-convert the selects in
# those loops; no floating-point exception is ever observed, so results do not change.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/linalg.cc PROPERTIES
  COMPILE_OPTIONS "-O3;-fopenmp-simd;-fno-trapping-math;-fno-math-errno")
