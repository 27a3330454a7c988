// Peer: the sending side of a payload, and SendPayload, which drives one from a caller thread.
#include <atomic>

#include "services/transport/peer.h"
#include "services/transport/ucx_status.h"

namespace kvc::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<uint64_t> g_next_token{1};

Status StatusFromFrame(uint64_t code, std::string_view message) {
  const auto c = static_cast<Code>(code);
  if (c == Code::kOk) return Status::OK();
  if (code > static_cast<uint64_t>(Code::kInternal)) {
    return Status::Internal("peer sent unknown status code " + std::to_string(code));
  }
  return Status(c, message);
}

}  // namespace

void Peer::SetAck(OutgoingSession& os, Result<uint64_t> ack) {
  if (os.ack_set) return;
  os.ack_set = true;
  os.ack.set_value(std::move(ack));
}

void Peer::SetResult(OutgoingSession& os, const Status& status) {
  if (os.result_set) return;
  os.result_set = true;
  os.result.set_value(status);
}

void Peer::StartOutgoing(const std::shared_ptr<OutgoingSession>& os) {
  if (closed_) {
    SetAck(*os, Status::Unavailable("connection to " + name_ + " is closed"));
    SetResult(*os, Status::Unavailable("connection to " + name_ + " is closed"));
    return;
  }
  outgoing_[os->token] = os;
  auto* op = new SendOp();
  op->hdr.type = FrameType::kHeader;
  op->hdr.session = os->requested_session;
  op->hdr.token = os->token;
  op->peer = shared_from_this();
  op->os = os;
  Transmit(op, os->descriptor_blob.data(), os->descriptor_blob.size(), UCP_AM_SEND_FLAG_EAGER,
           nullptr);
}

void Peer::PostFrame(const std::shared_ptr<OutgoingSession>& os, size_t index, uint64_t checksum) {
  if (closed_ || outgoing_.count(os->token) == 0) return;
  const Tensor& t = os->tensors[index];
  auto* op = new SendOp();
  op->hdr.type = FrameType::kTensor;
  op->hdr.session = os->session;
  op->hdr.arg = index;
  op->hdr.checksum = checksum;
  op->peer = shared_from_this();
  op->os = os;
  op->reg = os->regs[index];
  ++os->posted;
  const uint32_t flags = t.nbytes() >= os->rndv_threshold ? UCP_AM_SEND_FLAG_RNDV : 0;
  Transmit(op, t.raw(), t.nbytes(), flags, op->reg ? op->reg->memh() : nullptr);
}

void Peer::OnFrameSent(const std::shared_ptr<OutgoingSession>& os, ucs_status_t status) {
  ++os->completed;
  // A failed frame needs no action here: the receiver has failed the payload and its kResult
  // says why; a dead connection fails the session through Close.
  MaybeSendEnd(os);
}

void Peer::FinishFrames(const std::shared_ptr<OutgoingSession>& os) {
  os->finishing = true;
  MaybeSendEnd(os);
}

void Peer::MaybeSendEnd(const std::shared_ptr<OutgoingSession>& os) {
  // The end marker follows the completion of every frame: for rendezvous frames completion
  // means the receiver holds the data, so the marker cannot overtake them.
  if (!os->finishing || os->end_sent || os->completed != os->posted) return;
  if (closed_ || outgoing_.count(os->token) == 0) return;
  os->end_sent = true;
  if (os->faults.send_end) SendControl(FrameType::kEnd, os->session, os->token, os->posted, {});
}

void Peer::AbortOutgoing(const std::shared_ptr<OutgoingSession>& os) {
  if (outgoing_.erase(os->token) == 0) return;
  if (os->ack_set && os->session != 0)
    SendControl(FrameType::kCancel, os->session, os->token, 0, {});
}

void Peer::OnAck(const FrameHeader& h, std::string_view body) {
  auto it = outgoing_.find(h.token);
  if (it == outgoing_.end()) return;
  std::shared_ptr<OutgoingSession> os = it->second;
  const Status st = StatusFromFrame(h.arg, body);
  if (st.ok()) {
    os->session = h.session;
    SetAck(*os, h.session);
    return;
  }
  outgoing_.erase(it);
  SetAck(*os, st);
  SetResult(*os, st);
}

void Peer::OnResult(const FrameHeader& h, std::string_view body) {
  auto it = outgoing_.find(h.token);
  if (it == outgoing_.end()) return;
  std::shared_ptr<OutgoingSession> os = it->second;
  outgoing_.erase(it);
  const Status st = StatusFromFrame(h.arg, body);
  SetAck(*os, st.ok() ? Result<uint64_t>(h.session) : Result<uint64_t>(st));
  SetResult(*os, st);
}

// --- SendPayload: the caller-thread driver ------------------------------------------------------

namespace {

Status Register(UcxContext& ctx, RegistrationCache* cache, OutgoingSession* os) {
  os->regs.resize(os->tensors.size());
  for (size_t i = 0; i < os->tensors.size(); ++i) {
    const Tensor& t = os->tensors[i];
    if (t.nbytes() < os->rndv_threshold) continue;  // eager frames are copied anyway
    if (cache != nullptr) {
      KVC_ASSIGN_OR_RETURN(os->regs[i], cache->Get(t));
    } else {
      KVC_ASSIGN_OR_RETURN(ucp_mem_h memh,
                           ctx.handle()->Map(const_cast<void*>(t.raw()), t.nbytes()));
      os->regs[i] = std::make_shared<Registration>(ctx.handle(), memh, t);
    }
  }
  return Status::OK();
}

Status Withdraw(UcxContext& ctx, const std::shared_ptr<Peer>& peer,
                const std::shared_ptr<OutgoingSession>& os, const char* waiting_for) {
  ctx.Post([peer, os] { peer->AbortOutgoing(os); }).IgnoreError();
  return Status::DeadlineExceeded(std::string("deadline passed waiting for ") + waiting_for +
                                  " from " + peer->name());
}

}  // namespace

Result<uint64_t> SendPayload(UcxContext& ctx, const std::shared_ptr<Peer>& peer,
                             OutgoingPayload payload, RegistrationCache* cache,
                             const SendParams& params) {
  const size_t n = payload.tensors.size();
  if (n != payload.descriptor.tensors.size()) {
    return Status::InvalidArgument("payload has " + std::to_string(n) + " tensors for " +
                                   std::to_string(payload.descriptor.tensors.size()) + " entries");
  }
  auto os = std::make_shared<OutgoingSession>();
  os->token = g_next_token.fetch_add(1);
  os->requested_session = params.session;
  os->descriptor_blob = EncodeDescriptor(payload.descriptor);
  os->tensors = std::move(payload.tensors);
  os->rndv_threshold = params.rndv_threshold;
  os->faults = params.faults;
  KVC_RETURN_IF_ERROR(Register(ctx, cache, os.get()));
  auto ack_future = os->ack.get_future();
  auto result_future = os->result.get_future();
  KVC_RETURN_IF_ERROR(ctx.Post([peer, os] { peer->StartOutgoing(os); }));

  auto checksum = [&](size_t i) {
    uint64_t sum = Checksum(os->tensors[i].raw(), os->tensors[i].nbytes());
    return static_cast<int64_t>(i) == params.faults.corrupt_checksum_of ? sum ^ 1 : sum;
  };
  const uint64_t first = n > 0 ? checksum(0) : 0;  // overlaps the header's round trip
  if (ack_future.wait_until(params.deadline) != std::future_status::ready) {
    return Withdraw(ctx, peer, os, "the header's ack");
  }
  Result<uint64_t> ack = ack_future.get();
  if (!ack.ok()) return ack.status();

  const int64_t stop = params.faults.stop_after_frames;
  const size_t frames = stop >= 0 ? std::min(n, static_cast<size_t>(stop)) : n;
  for (size_t i = 0; i < frames; ++i) {
    if (result_future.wait_for(std::chrono::seconds(0)) == std::future_status::ready) break;
    const uint64_t sum = i == 0 ? first : checksum(i);
    KVC_RETURN_IF_ERROR(ctx.Post([peer, os, i, sum] { peer->PostFrame(os, i, sum); }));
  }
  KVC_RETURN_IF_ERROR(ctx.Post([peer, os] { peer->FinishFrames(os); }));
  if (result_future.wait_until(params.deadline) != std::future_status::ready) {
    return Withdraw(ctx, peer, os, "the receiver's result");
  }
  KVC_RETURN_IF_ERROR(result_future.get());
  return *ack;
}

}  // namespace kvc::transport
