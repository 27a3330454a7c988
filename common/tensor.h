// Tensor: a host, contiguous, row-major n-d array of one DType.
//
// Storage is shared: copying a Tensor copies a reference to the same bytes (like a view), and the
// bytes live as long as any Tensor (or the owner passed to View) refers to them. Use Clone() for
// a deep copy. A Tensor made by View() over a memory-mapped file keeps the mapping alive.
//
// Thread safety: concurrent const access is safe; writes through data() need external
// synchronisation with every other Tensor sharing the storage.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace kvc {

using Shape = std::vector<int64_t>;

// "[2, 3, 4]"
std::string ShapeToString(const Shape& shape);
// Product of dims; 1 for a scalar (empty shape).
int64_t ShapeNumel(const Shape& shape);

class Tensor {
 public:
  // An empty tensor: dtype F32, shape [0], no storage.
  Tensor();

  // Allocates uninitialised (Empty) or zeroed (Zeros) storage. Running out of memory throws
  // std::bad_alloc, exactly like operator new: the one exception to the Status model, because
  // callers that must survive large requests check sizes against a byte budget before allocating.
  // REQUIRES: every dim >= 0.
  static Tensor Empty(DType dtype, Shape shape);
  static Tensor Zeros(DType dtype, Shape shape);
  // Copies `values` into a new F32 tensor. REQUIRES: values.size() == ShapeNumel(shape).
  static Tensor FromVector(const std::vector<float>& values, Shape shape);
  // Wraps external bytes without copying; `owner` keeps them alive (may be null if the caller
  // guarantees the lifetime). REQUIRES: data holds ShapeNumel(shape) * DTypeSize(dtype) bytes.
  static Tensor View(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // REQUIRES: 0 <= i < rank().
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * DTypeSize(dtype_); }
  bool empty() const { return numel_ == 0; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  // Typed access. REQUIRES: sizeof(T) == DTypeSize(dtype()) and T matches the dtype's kind.
  template <typename T>
  T* data() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(data_);
  }

  // Deep copy with its own storage.
  Tensor Clone() const;
  // Converts between floating dtypes (round to nearest even). Returns a shared reference when
  // the dtype already matches. NotSupported for integer dtypes.
  Result<Tensor> To(DType dtype) const;
  // Same data, new shape. InvalidArgument if the element counts differ.
  Result<Tensor> Reshape(Shape shape) const;
  // The contiguous sub-tensor at index i of the first dimension (shares storage).
  // REQUIRES: rank() >= 1, 0 <= i < dim(0).
  Tensor Slice0(int64_t i) const;

  // True when every element of a floating tensor is finite (integers: always true). On false,
  // *first_bad (if given) receives the flat index of the first NaN/Inf.
  bool AllFinite(int64_t* first_bad = nullptr) const;
  // Reads element i as float. REQUIRES: floating dtype, 0 <= i < numel().
  float GetFloat(int64_t i) const;

 private:
  DType dtype_ = DType::kF32;
  Shape shape_{0};
  int64_t numel_ = 0;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

}  // namespace kvc
