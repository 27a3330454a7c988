# Kernel benchmarks: Google Benchmark per stage and per method, and the comparison table against
# OpenBLAS sgemm (design §7). Both run on one core and take a couple of minutes.
add_executable(kernels_bench ${CMAKE_CURRENT_LIST_DIR}/kernels_bench.cc)
target_include_directories(kernels_bench PRIVATE ${KVC_CBLAS_INCLUDE})
target_link_libraries(kernels_bench PRIVATE kvc_kernels kvc_synth ${BLAS_LIBRARIES}
                      benchmark::benchmark)

add_executable(kernels_compare ${CMAKE_CURRENT_LIST_DIR}/kernels_compare.cc)
target_include_directories(kernels_compare PRIVATE ${KVC_CBLAS_INCLUDE})
target_link_libraries(kernels_compare PRIVATE kvc_kernels kvc_synth ${BLAS_LIBRARIES})
