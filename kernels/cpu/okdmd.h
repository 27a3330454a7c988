// OK-DMD (design §4): a query-free eviction score from a linear (Koopman/DMD) model of the key
// trajectory k_t ~ A k_{t-1}. The dominant subspace Q of A (k_modes orthonormal columns) is where
// keys persist; a key's survival score is its energy in that subspace, ||Q^T k||^2.
//
// OkDmdStream is the per-head state: fitted at prefill on a block of keys, then updated one key at
// a time by recursive least squares with forgetting. ScoreOkDmd (pipeline.h) runs the prefill fit
// on every (layer, KV head).
//
// Thread safety: an OkDmdStream is a value; const methods may be called concurrently, Push needs
// exclusive access. All state is double precision.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/spec.h"

namespace kvc::cpu {

// The seed of (layer, head)'s random basis, derived from the request seed (SplitMix64), so scores
// do not depend on the order or the thread heads are processed in.
uint64_t OkDmdHeadSeed(uint64_t seed, int layer, int head);

class OkDmdStream {
 public:
  // A model with no keys seen: A = 0, P = I / sigma, Q = the orthonormal basis of a seeded
  // Gaussian d x k (k = min(k_modes, d)), which equals a prefill over zero or one key.
  // InvalidArgument on head_dim < 1, k_modes < 1, sigma <= 0, lambda outside (0, 1],
  // refresh_every < 1 or power_iters < 0.
  static Result<OkDmdStream> Create(int head_dim, const OkDmdOptions& o, uint64_t seed);

  // Prefill fit on keys [T, d] (row-major): X = K[0:T-1]^T, Y = K[1:T]^T,
  //   P = (X X^T + sigma I)^-1,  A = Y X^T P,
  // then Q0 = qr(seeded Gaussian d x k) and power_iters rounds Q <- qr(A Q). The last key becomes
  // the previous key of the stream. Same errors as Create; Internal if the solve fails.
  static Result<OkDmdStream> Prefill(const float* keys, int64_t T, int head_dim,
                                     const OkDmdOptions& o, uint64_t seed);

  // Streaming update for a new key k_t after k_{t-1} (design §4; the first key only becomes
  // k_{t-1}):
  //   u = P k_{t-1};  g = u / (lambda + k_{t-1}^T u + 1e-6);
  //   P <- (P - g u^T) / lambda;  P <- (P + P^T) / 2 + sigma I;
  //   e = k_t - A k_{t-1};  A <- A + e g^T;
  // and every refresh_every updates Q <- qr(A Q).
  void Push(const float* key);

  // Survival score ||Q^T k||^2 of any key [d].
  double Score(const float* key) const;

  int head_dim() const { return d_; }
  int modes() const { return k_; }
  // RLS updates applied so far (Push calls that had a previous key).
  int64_t updates() const { return updates_; }
  // Row-major d x d, d x d and d x k.
  const std::vector<double>& A() const { return a_; }
  const std::vector<double>& P() const { return p_; }
  const std::vector<double>& Q() const { return q_; }

 private:
  OkDmdStream(int d, const OkDmdOptions& o);
  // Q <- qr(A Q) (thin QR, Householder).
  void RefreshBasis();

  int d_ = 0;
  int k_ = 0;
  OkDmdOptions o_;
  std::vector<double> a_, p_, q_;
  std::vector<double> prev_;  // k_{t-1}; empty before the first key
  int64_t updates_ = 0;
};

}  // namespace kvc::cpu
