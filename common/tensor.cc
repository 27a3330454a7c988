#include "common/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace kvc {

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t ShapeNumel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor::Tensor() = default;

Tensor Tensor::Empty(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ShapeNumel(shape);
  t.shape_ = std::move(shape);
  const size_t bytes = t.nbytes();
  // 64-byte alignment suits BLAS and SIMD loads; at least one byte so data_ is never null.
  const size_t alloc = ((bytes ? bytes : 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, alloc);
  if (p == nullptr) throw std::bad_alloc();
  t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  Tensor t = Empty(dtype, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::FromVector(const std::vector<float>& values, Shape shape) {
  Tensor t = Empty(DType::kF32, std::move(shape));
  std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

Tensor Tensor::View(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = ShapeNumel(shape);
  t.shape_ = std::move(shape);
  t.owner_ = std::move(owner);
  t.data_ = data;
  return t;
}

Tensor Tensor::Clone() const {
  Tensor t = Empty(dtype_, shape_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

Result<Tensor> Tensor::To(DType dtype) const {
  if (dtype == dtype_) return *this;
  if (!IsFloating(dtype) || !IsFloating(dtype_)) {
    return Status::NotSupported(std::string("cannot convert ") + DTypeName(dtype_) + " to " +
                                DTypeName(dtype));
  }
  Tensor t = Empty(dtype, shape_);
  ConvertBuffer(dtype_, data_, dtype, t.data_, static_cast<size_t>(numel_));
  return t;
}

Result<Tensor> Tensor::Reshape(Shape shape) const {
  if (ShapeNumel(shape) != numel_) {
    return Status::InvalidArgument("cannot reshape " + ShapeToString(shape_) + " to " +
                                   ShapeToString(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::Slice0(int64_t i) const {
  Shape sub(shape_.begin() + 1, shape_.end());
  const size_t stride = static_cast<size_t>(ShapeNumel(sub)) * DTypeSize(dtype_);
  return View(dtype_, std::move(sub), static_cast<uint8_t*>(data_) + i * stride, owner_);
}

float Tensor::GetFloat(int64_t i) const {
  switch (dtype_) {
    case DType::kF32: return data<float>()[i];
    case DType::kF16: return HalfToFloat(data<uint16_t>()[i]);
    case DType::kBF16: return Bf16ToFloat(data<uint16_t>()[i]);
    default: return 0.f;
  }
}

bool Tensor::AllFinite(int64_t* first_bad) const {
  if (!IsFloating(dtype_)) return true;
  for (int64_t i = 0; i < numel_; ++i) {
    bool finite;
    if (dtype_ == DType::kF32) {
      finite = (FloatBits(data<float>()[i]) & 0x7f800000u) != 0x7f800000u;
    } else if (dtype_ == DType::kF16) {
      finite = (data<uint16_t>()[i] & 0x7c00u) != 0x7c00u;
    } else {
      finite = (data<uint16_t>()[i] & 0x7f80u) != 0x7f80u;
    }
    if (!finite) {
      if (first_bad) *first_bad = i;
      return false;
    }
  }
  return true;
}

}  // namespace kvc
