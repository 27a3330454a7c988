// Shared pieces of the comparison harness (cuda_compare_test): the GPU context, the skip rule,
// the per-op tolerances and small helpers. Test-only header.
//
// Tolerances are bounds on Nmse (reference_ops.h) between a GPU result and the double-precision
// CPU reference on identical inputs. Each states the f32 error it has to cover.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/cuda/cases.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/reference_ops.h"

namespace kvc::cuda::test {

// f32 products of length d <= 128 (and T <= 2000 for P V): relative error per element about
// sqrt(len) * 2^-24, Nmse ~1e-13; 1e-9 leaves four orders of margin.
inline constexpr double kTolProducts = 1e-9;
// TF32 rounds inputs to 10 mantissa bits: on these cases, rounding Q and K to TF32 on the CPU
// gives a scores Nmse of 6e-8 to 8e-8 (truncation instead of rounding would double the error).
inline constexpr double kTolTf32 = 1e-5;
// expf / logf (<= 2 ulp) on arguments whose f32 rounding is ~1e-6 absolute.
inline constexpr double kTolSoftmax = 1e-9;
// 30 projected-gradient steps in f32 (nonexpansive map: errors do not grow).
inline constexpr double kTolNnls = 1e-6;
// f32 Cholesky on ridge-floored (1e-3) well-conditioned Gram matrices.
inline constexpr double kTolLstsq = 1e-6;
// Whole AM fit with a fixed selection, uniform beta start and 1e-3 ridge floors: beta and
// values pass through f32 softmax, NNLS and Cholesky.
inline constexpr double kTolAmBeta = 1e-5;
inline constexpr double kTolAmValues = 1e-4;
// Default AM fit (least-squares start, 1e-6 floor): compare held-out fidelity instead. f32
// accumulation alone moves the mean held-out cosine by up to 3e-4 on these cases (see
// RefChecks.FloatAccumulationKeepsDefaultFidelity), TF32-rounded inputs by up to 1.1e-4.
inline constexpr double kTolFidelityCosine = 5e-3;

// The process-wide GPU context; status says why it could not be created.
struct GpuState {
  std::unique_ptr<GpuContext> ctx;
  Status status;
};
const GpuState& Gpu();

// Options under which GPU and CPU results are comparable element by element.
AmFitOptions StrictAmOptions();

// Copies to the device; aborts the test on failure.
DeviceBuffer ToDevice(const std::vector<float>& host);
DeviceBuffer ToDeviceInt(const std::vector<int32_t>& host);
std::vector<float> ToHost(const DeviceBuffer& buf, size_t count);
std::vector<int32_t> ToHostInt(const DeviceBuffer& buf, size_t count);
RaggedLayout Layout(const std::vector<int64_t>& offsets);

// Reference pieces of a case that several tests need.
struct CaseData {
  AmCase c;
  AmFitHostProblem p;
  ref::Offsets full;  // batch x T
  ref::Offsets kept;  // from the budgets
  ref::Vec s;         // scores [batch, n, T]
  ref::RowStatsResult stats;
  ref::Vec col_scores;  // [batch, T]
  std::vector<int32_t> idx;
  ref::Vec sc;   // kept-key scores, ragged n x t_b
  ref::Vec phi;  // exp(sc - max)
  ref::Vec z;    // row masses
};
CaseData MakeCaseData(const AmCase& c);

std::string CaseName(const testing::TestParamInfo<AmCase>& info);

// exp of every element: beta is compared through w = exp(beta), whose scale is 1, so that a
// normalised error does not blow up when beta is near 0.
std::vector<float> Exp(const std::vector<float>& beta);

}  // namespace kvc::cuda::test

namespace kvc::cuda {
// gtest prints test parameters with this (instead of a byte dump).
void PrintTo(const AmCase& c, std::ostream* os);
}  // namespace kvc::cuda

// Skips the current test when there is no CUDA device; fails it when a device exists but the
// context could not be created. Declares `GpuContext& ctx`.
#define KVC_REQUIRE_GPU(ctx)                                                                       \
  if (::kvc::cuda::DeviceCount() == 0) {                                                           \
    GTEST_SKIP() << "no CUDA device (" << ::kvc::cuda::NoDeviceReason()                            \
                 << "): GPU side skipped, CPU reference checks run in RefChecks.*";                \
  }                                                                                                \
  ASSERT_TRUE(::kvc::cuda::test::Gpu().status.ok()) << ::kvc::cuda::test::Gpu().status.ToString(); \
  ::kvc::cuda::GpuContext& ctx = *::kvc::cuda::test::Gpu().ctx
