// The transport's wire format (version 1). Every message is one UCP active message with id
// kAmId whose user header is a FrameHeader; the AM data part depends on the frame type.
//
// A payload (a KvCache upload, or a CompactedCache pushed back to a client) moves as
//   sender -> receiver  kHeader  {session or 0, token}         data: encoded PayloadDescriptor
//   receiver -> sender  kAck     {session, token, status}      data: status message
//   sender -> receiver  kTensor  {session, index, xxh3-64}     data: the tensor's bytes, one frame
//                                                              per tensor (whole layer tensors)
//   sender -> receiver  kEnd     {session, frames sent}
//   receiver -> sender  kResult  {session, token, status}      data: status message
// The sender posts tensor frames only after an OK ack, so a refused payload (budget, bad
// descriptor) costs one round trip and no data. Every admitted payload ends with exactly one
// kResult unless the connection dies. kCancel {session} withdraws a payload without a result.
// A fetch is kFetchRequest {session} (data: the key) from the client; the server answers with a
// payload under that session id, or kFetchError {session, status}. A new endpoint starts with
// kHello {token from the bootstrap answer, see bootstrap.h}, answered by kHelloAck. All frames
// are sent with UCP_AM_SEND_FLAG_REPLY (the receiver routes them by their endpoint); control
// frames are forced eager, tensor frames of rndv_threshold bytes or more rendezvous.
//
// Why active messages rather than tagged sends: the receiver learns each tensor's identity and
// size from the frame header before any data moves (the rendezvous request carries it), picks the
// staging buffer then and pulls the data straight into it with ucp_am_recv_data_nbx (zero copy
// into registered memory), or refuses the frame without receiving it (an error returned from the
// handler completes the sender's request with that error). Tagged receives would have to be
// posted per tensor with a known size before the data arrives (another round trip after the
// header, or probing unexpected messages), and give no way to decline a message short of
// receiving it. Both ride on the same UCX rendezvous protocols, so bandwidth is the same; the
// benchmark (tests/bench/transport_bw.cc) checks ours against ucx_perftest tag_bw.
//
// The tensor's checksum travels in its own frame rather than in the descriptor: the sender
// hashes layer i+1 while layer i is on the wire, and the receiver verifies layer i while layer
// i+1 arrives, instead of reading the whole cache once before the first byte moves.
//
// All integers are little-endian. The descriptor is:
//   u32 magic "KVCD", u16 version, u8 kind, u8 reserved,
//   i32 n_layers, i32 n_kv_heads, i32 n_q_heads, i32 head_dim, u8 dtype, u8[7] reserved,
//   i64 tokens, u32 n_tensors, then per tensor:
//     u8 role, u8 dtype, u8 rank, u8 reserved, i32 layer, i64 dims[rank], u64 nbytes,
//   u32 n_metadata, then per entry: u32 key length, key bytes, u32 value length, value bytes.
// An unknown version is NotSupported; anything short, oversized or inconsistent is Corruption;
// a well-formed descriptor whose tensors do not fit the layout is InvalidArgument.
//
// Thread safety: pure functions and plain values.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvc::transport {

static_assert(std::endian::native == std::endian::little, "the wire format assumes little-endian");

inline constexpr unsigned kAmId = 11;
inline constexpr uint32_t kFrameMagic = 0x4643564b;       // "KVCF"
inline constexpr uint32_t kDescriptorMagic = 0x4443564b;  // "KVCD"
inline constexpr uint16_t kWireVersion = 1;
inline constexpr size_t kMaxDescriptorBytes = size_t{1} << 20;
inline constexpr size_t kMaxKeyBytes = 4096;

enum class FrameType : uint16_t {
  kHello = 1,
  kHelloAck = 2,
  kHeader = 3,
  kAck = 4,
  kTensor = 5,
  kEnd = 6,
  kResult = 7,
  kCancel = 8,
  kFetchRequest = 9,
  kFetchError = 10,
};
const char* FrameTypeName(FrameType type);

// The AM user header of every frame. Plain bytes, copied in and out with memcpy.
struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint16_t version = kWireVersion;
  FrameType type = FrameType::kHello;
  uint64_t session = 0;   // payload session id (0 in a kHeader asks the receiver to assign one)
  uint64_t token = 0;     // the sender's local id of a payload: kHeader, kAck, kResult
  uint64_t arg = 0;       // kTensor: index; kEnd: frames sent; kAck/kResult/kFetchError: Code
  uint64_t checksum = 0;  // kTensor: xxh3-64 of the frame's data
};
static_assert(sizeof(FrameHeader) == 40);

// Parses an AM user header. Corruption when short or the magic is wrong, NotSupported for
// another wire version or an unknown frame type.
Result<FrameHeader> ParseFrameHeader(const void* data, size_t len);

enum class PayloadKind : uint8_t { kKvCache = 1, kCompacted = 2 };
enum class TensorRole : uint8_t {
  kK = 1,
  kV = 2,
  kQWindow = 3,
  kQRef = 4,
  kBeta = 5,
  kOffsets = 6
};
const char* TensorRoleName(TensorRole role);

struct TensorDesc {
  TensorRole role = TensorRole::kK;
  int32_t layer = 0;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t nbytes = 0;  // ShapeNumel(shape) * DTypeSize(dtype)
  bool operator==(const TensorDesc&) const = default;
};

// What a header frame announces: the kind, the layout, every tensor in send order, metadata.
// Order: KvCache, per layer k, v, [q_window], [q_ref]; CompactedCache, per layer k, v, beta,
// offsets (I64 [n_kv_heads + 1]).
struct PayloadDescriptor {
  PayloadKind kind = PayloadKind::kKvCache;
  KvLayout layout;
  std::vector<TensorDesc> tensors;
  std::map<std::string, std::string> metadata;

  uint64_t total_bytes() const;
  bool operator==(const PayloadDescriptor&) const = default;
};

std::string EncodeDescriptor(const PayloadDescriptor& desc);
// Decodes and then checks with CheckDescriptor.
Result<PayloadDescriptor> DecodeDescriptor(std::string_view bytes);
// Checks tensor order, shapes and byte sizes against the kind and layout (see above).
Status CheckDescriptor(const PayloadDescriptor& desc);

// xxh3-64 (seed 0) of `len` bytes.
uint64_t Checksum(const void* data, size_t len);

}  // namespace kvc::transport
