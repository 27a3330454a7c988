// Peer: life cycle, frame dispatch and control frames. Incoming payloads are in peer_recv.cc,
// outgoing ones in peer_send.cc.
#include "services/transport/peer.h"

#include <unistd.h>

#include <cerrno>
#include <random>

#include "services/transport/ucx_status.h"

namespace kvc::transport {
namespace {

uint64_t RandomU64() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

ucp_ep_params_t BaseEpParams(UcxContext* ctx) {
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p.err_mode = UCP_ERR_HANDLING_MODE_NONE;  // see peer.h: keeps shared memory selectable
  p.err_handler = ctx->ErrorHandler();
  return p;
}

}  // namespace

Peer::Peer(UcxContext* ctx, ucp_ep_h ep, int sock, std::string name, PeerDelegate* delegate,
           const PeerOptions& options)
    : ctx_(ctx),
      ep_(ep),
      sock_(sock),
      name_(std::move(name)),
      delegate_(delegate),
      options_(options),
      next_session_(RandomU64()) {}

Peer::~Peer() {
  if (sock_ >= 0) close(sock_);
}

Result<std::shared_ptr<Peer>> Peer::Connect(UcxContext* ctx, const std::string& worker_address,
                                            int sock, std::string name, PeerDelegate* delegate,
                                            const PeerOptions& options) {
  ucp_ep_params_t p = BaseEpParams(ctx);
  p.field_mask |= UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  p.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
  ucp_ep_h ep = nullptr;
  const ucs_status_t st = ucp_ep_create(ctx->worker(), &p, &ep);
  if (st != UCS_OK) {
    close(sock);
    return Status::Unavailable(FromUcs(st, "creating an endpoint to " + name).message());
  }
  std::shared_ptr<Peer> peer(new Peer(ctx, ep, sock, std::move(name), delegate, options));
  ctx->Attach(ep, peer);
  peer->WatchSocket();
  return peer;
}

Result<std::shared_ptr<Peer>> Peer::Adopt(UcxContext* ctx, ucp_ep_h ep, int sock, std::string name,
                                          PeerDelegate* delegate, const PeerOptions& options) {
  // UCX created this endpoint for the client's wire-up (with the client's error mode); give it
  // our error handler so failures reach the peer like those of endpoints we create.
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p.err_handler = ctx->ErrorHandler();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  ucs_status_ptr_t req = ucp_ep_modify_nb(ep, &p);
#pragma GCC diagnostic pop
  if (UCS_PTR_IS_ERR(req)) {
    close(sock);
    return FromUcs(UCS_PTR_STATUS(req), "adopting the endpoint of " + name);
  }
  if (req != nullptr) ucp_request_free(req);
  std::shared_ptr<Peer> peer(new Peer(ctx, ep, sock, std::move(name), delegate, options));
  ctx->Attach(ep, peer);
  peer->WatchSocket();
  return peer;
}

void Peer::WatchSocket() {
  std::weak_ptr<Peer> weak = weak_from_this();
  ctx_->WatchFd(sock_, [weak](short revents) {
    auto self = weak.lock();
    if (!self) return;
    char buf[64];
    const ssize_t n = read(self->sock_, buf, sizeof(buf));
    if (n > 0) return;  // nothing is sent after the bootstrap; ignore stray bytes
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // The other side is gone. Frames it sent before leaving may still wait in the worker:
    // deliver them first (this runs outside any UCX callback).
    for (int i = 0; i < 1000 && !self->closed_; ++i) {
      if (ucp_worker_progress(self->ctx_->worker()) == 0) break;
    }
    self->Close(/*force=*/true, Status::Unavailable("the other side closed the connection"));
  });
}

std::string Peer::Describe() const {
  return closed_ ? std::string("closed") : UcxContext::DescribeEndpoint(ep_);
}

void Peer::Close(bool force, const Status& why) {
  if (closed_) return;
  auto self = shared_from_this();  // Detach drops the context's reference
  closed_ = true;
  const Status lost = Status::Unavailable("connection to " + name_ + " closed: " + why.ToString());
  auto incoming = std::move(incoming_);
  incoming_.clear();
  for (auto& [id, s] : incoming) {
    s->dead = true;
    if (delegate_ && !s->delivering) delegate_->OnPayloadFailed(*this, id, lost);
  }
  auto outgoing = std::move(outgoing_);
  outgoing_.clear();
  for (auto& [token, os] : outgoing) {
    SetAck(*os, lost);
    SetResult(*os, lost);
  }
  // The bootstrap socket closes after the endpoint: on a graceful close the other side then
  // sees EOF only once what was sent has been flushed.
  ctx_->UnwatchFd(sock_);
  ctx_->Detach(ep_);
  ctx_->CloseEndpoint(ep_, force, [self] {
    close(self->sock_);
    self->sock_ = -1;
  });
  PeerDelegate* d = delegate_;
  delegate_ = nullptr;
  if (d) d->OnClosed(*this, why);
}

void Peer::OnEndpointError(ucs_status_t status) {
  if (closed_ || error_pending_) return;
  error_pending_ = true;
  // Close outside UCX's error callback.
  const Status why = Status::Unavailable(FromUcs(status, "endpoint error").message());
  auto self = shared_from_this();
  if (!ctx_->Post([self, why] { self->Close(/*force=*/true, why); }).ok()) Close(true, why);
}

void Peer::OnContextShutdown() {
  Close(/*force=*/true, Status::Cancelled("transport shutting down"));
}

uint64_t Peer::AssignSession() {
  uint64_t id = 0;
  do {
    id = next_session_++;
  } while (id == 0 || incoming_.count(id) != 0);
  return id;
}

// --- Sending frames -----------------------------------------------------------------------------

void Peer::Transmit(SendOp* op, const void* data, size_t len, uint32_t flags, ucp_mem_h memh) {
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = &Peer::OnSendDone;
  p.user_data = op;
  p.flags = UCP_AM_SEND_FLAG_REPLY | flags;
  if (memh != nullptr) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p.memh = memh;
  }
  void* req = ucp_am_send_nbx(ep_, kAmId, &op->hdr, sizeof(op->hdr), data, len, &p);
  if (req == nullptr) {
    OnSendDone(nullptr, UCS_OK, op);
  } else if (UCS_PTR_IS_ERR(req)) {
    OnSendDone(nullptr, UCS_PTR_STATUS(req), op);
  }
}

void Peer::OnSendDone(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<SendOp*>(user_data);
  if (request != nullptr) ucp_request_free(request);
  if (op->os && op->hdr.type == FrameType::kTensor) op->peer->OnFrameSent(op->os, status);
  delete op;
}

void Peer::SendControl(FrameType type, uint64_t session, uint64_t token, uint64_t arg,
                       std::string data) {
  if (closed_) return;
  auto* op = new SendOp();
  op->hdr.type = type;
  op->hdr.session = session;
  op->hdr.token = token;
  op->hdr.arg = arg;
  op->data = std::move(data);
  op->peer = shared_from_this();
  Transmit(op, op->data.data(), op->data.size(), UCP_AM_SEND_FLAG_EAGER, nullptr);
}

void Peer::SendHello(uint64_t token) { SendControl(FrameType::kHello, 0, token, kWireVersion, {}); }

void Peer::SendFetchRequest(uint64_t session, const std::string& key) {
  SendControl(FrameType::kFetchRequest, session, 0, 0, key);
}

void Peer::SendFetchError(uint64_t session, const Status& status) {
  SendControl(FrameType::kFetchError, session, 0, static_cast<uint64_t>(status.code()),
              status.message());
}

// --- Dispatch -----------------------------------------------------------------------------------

ucs_status_t Peer::OnFrame(const void* header, size_t header_len, void* data, size_t len,
                           const ucp_am_recv_param_t* param) {
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  Result<FrameHeader> parsed = ParseFrameHeader(header, header_len);
  if (closed_ || !parsed.ok()) return rndv ? UCS_ERR_CANCELED : UCS_OK;
  const FrameHeader& h = *parsed;
  if (h.type == FrameType::kTensor) return OnTensor(h, data, len, rndv);
  if (rndv) return UCS_ERR_UNSUPPORTED;  // control frames are always eager
  const std::string_view body(static_cast<const char*>(data), len);
  switch (h.type) {
    case FrameType::kHello:
      SendControl(FrameType::kHelloAck, 0, 0, kWireVersion, {});
      break;
    case FrameType::kHelloAck:
      if (delegate_) delegate_->OnHelloAck(*this);
      break;
    case FrameType::kHeader:
      OnHeader(h, body);
      break;
    case FrameType::kAck:
      OnAck(h, body);
      break;
    case FrameType::kEnd:
      OnEnd(h);
      break;
    case FrameType::kResult:
      OnResult(h, body);
      break;
    case FrameType::kCancel:
      OnCancel(h);
      break;
    case FrameType::kFetchRequest:
      if (delegate_ && h.session != 0 && len <= kMaxKeyBytes) {
        delegate_->OnFetchRequest(*this, h.session, std::string(body));
      } else {
        SendFetchError(h.session, Status::InvalidArgument("fetch needs a session id and a key"));
      }
      break;
    case FrameType::kFetchError:
      if (delegate_) {
        const auto code = static_cast<Code>(h.arg);
        delegate_->OnFetchError(*this, h.session,
                                Status(code == Code::kOk ? Code::kInternal : code, body));
      }
      break;
    case FrameType::kTensor:
      break;
  }
  return UCS_OK;
}

}  // namespace kvc::transport
