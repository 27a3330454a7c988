// Peer: the receiving side of a payload. Staging buffers are taken from the delegate's pool at
// the header; tensor frames land in them (rendezvous frames straight from the sender's memory
// through ucp_am_recv_data_nbx), are verified on the verification pool, and the complete payload
// goes to the delegate once the end marker has come.
#include <cstring>

#include "services/transport/peer.h"
#include "services/transport/ucx_status.h"

namespace kvc::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::string TensorName(const PayloadDescriptor& d, size_t i) {
  const TensorDesc& t = d.tensors[i];
  return "layers." + std::to_string(t.layer) + "." + TensorRoleName(t.role);
}

}  // namespace

void Peer::OnHeader(const FrameHeader& h, std::string_view body) {
  auto refuse = [&](uint64_t session, const Status& st) {
    SendControl(FrameType::kAck, session, h.token, static_cast<uint64_t>(st.code()), st.message());
  };
  Result<PayloadDescriptor> desc = DecodeDescriptor(body);
  if (!desc.ok()) return refuse(h.session, desc.status());
  const uint64_t id = h.session != 0 ? h.session : AssignSession();
  if (incoming_.count(id) != 0) {
    return refuse(id, Status::InvalidArgument("session " + std::to_string(id) + " is active"));
  }
  if (delegate_ == nullptr) return refuse(id, Status::Unavailable("receiver is closing"));
  Result<StagingPool*> pool = delegate_->AdmitPayload(*this, id, *desc);
  if (!pool.ok()) {
    delegate_->OnPayloadFailed(*this, id, pool.status());
    return refuse(id, pool.status());
  }
  std::vector<uint64_t> sizes;
  for (const auto& t : desc->tensors) sizes.push_back(t.nbytes);
  Result<std::vector<StagingRef>> buffers = (*pool)->AcquireAll(sizes);
  if (!buffers.ok()) {
    delegate_->OnPayloadFailed(*this, id, buffers.status());
    return refuse(id, buffers.status());
  }
  auto s = std::make_shared<Incoming>();
  s->id = id;
  s->token = h.token;
  s->desc = std::move(*desc);
  s->buffers = std::move(*buffers);
  s->checksums.assign(sizes.size(), 0);
  s->parts.assign(sizes.size(), Part::kMissing);
  s->last_activity = Clock::now();
  incoming_[id] = s;
  SendControl(FrameType::kAck, id, h.token, static_cast<uint64_t>(Code::kOk), {});
}

ucs_status_t Peer::OnTensor(const FrameHeader& h, void* data, size_t len, bool rndv) {
  const ucs_status_t drop = rndv ? UCS_ERR_CANCELED : UCS_OK;
  auto it = incoming_.find(h.session);
  if (it == incoming_.end()) return drop;  // failed, cancelled or never admitted
  std::shared_ptr<Incoming> s = it->second;
  const size_t i = h.arg;
  if (i >= s->parts.size() || s->parts[i] != Part::kMissing || s->end_seen) {
    Fail(s, Status::Corruption("tensor frame " + std::to_string(i) + " is unexpected"));
    return drop;
  }
  if (len != s->desc.tensors[i].nbytes) {
    Fail(s, Status::Corruption(TensorName(s->desc, i) + ": frame carries " + std::to_string(len) +
                               " bytes, the header announced " +
                               std::to_string(s->desc.tensors[i].nbytes)));
    return drop;
  }
  s->checksums[i] = h.checksum;
  s->last_activity = Clock::now();
  const StagingRef& buf = s->buffers[i];
  if (!rndv) {
    if (len) std::memcpy(buf->data(), data, len);
    StartVerify(s, i);
    return UCS_OK;
  }
  s->parts[i] = Part::kReceiving;
  auto* op = new RecvOp{shared_from_this(), s, i, buf};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.recv_am = &Peer::OnRecvDone;
  p.user_data = op;
  if (buf->memh() != nullptr) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p.memh = buf->memh();
  }
  void* req = ucp_am_recv_data_nbx(ctx_->worker(), data, buf->data(), len, &p);
  if (req == nullptr || UCS_PTR_IS_ERR(req)) {
    delete op;
    OnReceived(s, i, req == nullptr ? UCS_OK : UCS_PTR_STATUS(req));
  }
  return UCS_INPROGRESS;  // UCP owns the descriptor once the receive was started
}

void Peer::OnRecvDone(void* request, ucs_status_t status, size_t length, void* user_data) {
  auto* op = static_cast<RecvOp*>(user_data);
  ucp_request_free(request);
  op->peer->OnReceived(op->session, op->index, status);
  delete op;
}

void Peer::OnReceived(const std::shared_ptr<Incoming>& s, size_t index, ucs_status_t status) {
  if (s->dead) return;
  if (status != UCS_OK) {
    Fail(s, FromUcs(status, "receiving " + TensorName(s->desc, index)));
    return;
  }
  s->last_activity = Clock::now();
  StartVerify(s, index);
}

void Peer::StartVerify(const std::shared_ptr<Incoming>& s, size_t index) {
  s->parts[index] = Part::kVerifying;
  const StagingRef& buf = s->buffers[index];
  const uint64_t want = s->checksums[index];
  if (buf->size() <= options_.inline_verify_bytes) {
    OnVerified(s, index, Checksum(buf->data(), buf->size()) == want);
    return;
  }
  UcxContext* ctx = ctx_;
  auto self = shared_from_this();
  ctx->verify_pool().Submit([ctx, self, s, index, buf, want] {
    const bool ok = Checksum(buf->data(), buf->size()) == want;
    ctx->Post([self, s, index, ok] { self->OnVerified(s, index, ok); }).IgnoreError();
  });
}

void Peer::OnVerified(const std::shared_ptr<Incoming>& s, size_t index, bool ok) {
  if (s->dead) return;
  if (!ok) {
    Fail(s, Status::Corruption(TensorName(s->desc, index) + ": xxh3-64 checksum mismatch"));
    return;
  }
  s->parts[index] = Part::kDone;
  ++s->done;
  s->last_activity = Clock::now();
  MaybeDeliver(s);
}

void Peer::OnEnd(const FrameHeader& h) {
  auto it = incoming_.find(h.session);
  if (it == incoming_.end()) return;
  std::shared_ptr<Incoming> s = it->second;
  s->end_seen = true;
  size_t missing = 0;
  for (Part p : s->parts) missing += p == Part::kMissing ? 1 : 0;
  if (missing != 0 || h.arg != s->parts.size()) {
    Fail(s, Status::Corruption("payload ended after " + std::to_string(h.arg) + " frames, " +
                               std::to_string(missing) + " of " + std::to_string(s->parts.size()) +
                               " tensors missing"));
    return;
  }
  MaybeDeliver(s);
}

void Peer::MaybeDeliver(const std::shared_ptr<Incoming>& s) {
  if (!s->end_seen || s->done != s->parts.size() || s->delivering || delegate_ == nullptr) return;
  s->delivering = true;
  delegate_->OnPayload(*this, s->id, std::move(s->desc), std::move(s->buffers));
}

void Peer::OnCancel(const FrameHeader& h) {
  auto it = incoming_.find(h.session);
  if (it == incoming_.end() || it->second->delivering) return;
  Fail(it->second, Status::Cancelled("the sender withdrew the payload"), /*send_result=*/false);
}

void Peer::Fail(std::shared_ptr<Incoming> s, const Status& status, bool send_result) {
  // By value: erasing the map entry below must not destroy the caller's reference.
  if (s->dead) return;
  s->dead = true;
  incoming_.erase(s->id);
  // Buffers with a receive in flight stay referenced by it until UCX completes the receive.
  s->buffers.clear();
  if (delegate_) delegate_->OnPayloadFailed(*this, s->id, status);  // before the sender hears
  if (send_result) {
    SendControl(FrameType::kResult, s->id, s->token, static_cast<uint64_t>(status.code()),
                status.message());
  }
}

void Peer::FinishIncoming(uint64_t session, const Status& status) {
  auto it = incoming_.find(session);
  if (it == incoming_.end()) return;
  const uint64_t token = it->second->token;
  it->second->dead = true;
  incoming_.erase(it);
  SendControl(FrameType::kResult, session, token, static_cast<uint64_t>(status.code()),
              status.message());
}

void Peer::DropIncoming(uint64_t session, const Status& status) {
  auto it = incoming_.find(session);
  if (it != incoming_.end() && !it->second->delivering) Fail(it->second, status);
}

void Peer::Sweep(Clock::time_point now) {
  std::vector<std::shared_ptr<Incoming>> idle;
  for (auto& [id, s] : incoming_) {
    if (!s->delivering && now - s->last_activity > options_.idle_timeout) idle.push_back(s);
  }
  for (auto& s : idle) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - s->last_activity);
    Fail(s, Status::DeadlineExceeded("payload " + std::to_string(s->id) + " idle for " +
                                     std::to_string(ms.count()) + " ms; dropped"));
  }
}

}  // namespace kvc::transport
