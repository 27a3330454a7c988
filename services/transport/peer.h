// Peer: the protocol engine of one UCP endpoint (internal to the transport). A Listener owns one
// Peer per accepted connection; a client Endpoint owns one Peer for its connection. The frames
// and their order are described in wire.h.
//
// Threading: a Peer lives on its context's progress thread; every method except SendPayload
// must be called there (other threads post closures through UcxContext::Post). Incoming tensors
// are verified on the context's verification pool, never on the progress thread (except tiny
// ones). Its PeerDelegate is called on the progress thread only, and never after Close.
//
// Error handling: endpoints use UCP_ERR_HANDLING_MODE_NONE. UCX 1.13 gives the shared-memory
// transports (posix, sysv, cma) no peer-failure support, so asking for it would rule them out
// and force TCP even between processes on one host. Peer failure is detected instead through
// the bootstrap TCP connection both sides keep open (bootstrap.h): EOF fails the Peer at once.
//
// Failure: when the endpoint fails (UCX error callback) or is closed, every incoming session is
// dropped (no result is sent), every outgoing one completes with Unavailable, and the delegate
// hears OnClosed once. Staging buffers of dropped sessions return to their pool as soon as no
// UCX operation writes into them any more.
#pragma once

#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "services/transport/payload.h"
#include "services/transport/registration_cache.h"
#include "services/transport/staging_pool.h"
#include "services/transport/ucx_context.h"
#include "services/transport/wire.h"

namespace kvc::transport {

class Peer;

// The owner's side of a Peer. All calls on the progress thread.
class PeerDelegate {
 public:
  virtual ~PeerDelegate() = default;
  // A payload header arrived: the pool to stage it in, or the status that refuses it.
  virtual Result<StagingPool*> AdmitPayload(Peer& peer, uint64_t session,
                                            const PayloadDescriptor& desc) = 0;
  // Every tensor arrived, was verified, and the end marker came. The delegate must eventually
  // call peer.FinishIncoming(session, status), whose status the sender receives.
  virtual void OnPayload(Peer& peer, uint64_t session, PayloadDescriptor desc,
                         std::vector<StagingRef> buffers) = 0;
  // A payload was refused at its header or failed later (corruption, idle timeout, cancel,
  // disconnect); `status` says why.
  virtual void OnPayloadFailed(Peer& peer, uint64_t session, const Status& status) = 0;
  virtual void OnFetchRequest(Peer& peer, uint64_t session, std::string key) = 0;
  virtual void OnFetchError(Peer& peer, uint64_t session, const Status& status) = 0;
  virtual void OnHelloAck(Peer& peer) = 0;
  // The endpoint failed or was closed. No delegate call follows.
  virtual void OnClosed(Peer& peer, const Status& why) = 0;
};

struct PeerOptions {
  // An incoming payload with no activity for this long is dropped (DeadlineExceeded).
  std::chrono::milliseconds idle_timeout{30000};
  // Tensors up to this size are verified on the progress thread.
  size_t inline_verify_bytes = size_t{64} << 10;
};

// One outgoing payload, shared by the thread that drives it (SendPayload) and the progress
// thread. Fields below "progress thread" are touched only there.
struct OutgoingSession {
  uint64_t token = 0;
  uint64_t requested_session = 0;
  std::string descriptor_blob;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Registration>> regs;  // null entries: unregistered
  size_t rndv_threshold = 0;
  SendFaults faults;
  std::promise<Result<uint64_t>> ack;  // the session id, or why the header was refused
  std::promise<Status> result;         // the receiver's verdict
  // progress thread
  uint64_t session = 0;
  size_t posted = 0;
  size_t completed = 0;
  bool finishing = false;
  bool end_sent = false;
  bool ack_set = false;
  bool result_set = false;
};

struct SendParams {
  // Session id to send under (a fetch answer uses the client's); 0 lets the receiver assign.
  uint64_t session = 0;
  std::chrono::steady_clock::time_point deadline;
  // Frames of at least this many bytes are forced onto the rendezvous protocol.
  size_t rndv_threshold = size_t{64} << 10;
  SendFaults faults;
};

// Sends one payload over `peer` and blocks until the receiver's result. Hashes each frame on the
// calling thread just before posting it, so hashing overlaps the frames already in flight.
// `cache` may be null (registrations then last for this send only). Returns the session id;
// the receiver's status when it refused or failed the payload; Unavailable when the connection
// fails; DeadlineExceeded (after withdrawing the payload) when the deadline passes.
// REQUIRES: not on the progress thread; payload.tensors match payload.descriptor in count.
Result<uint64_t> SendPayload(UcxContext& ctx, const std::shared_ptr<Peer>& peer,
                             OutgoingPayload payload, RegistrationCache* cache,
                             const SendParams& params);

class Peer : public FrameSink, public std::enable_shared_from_this<Peer> {
 public:
  // Progress thread. Creates an endpoint to the worker at `worker_address` (see bootstrap.h);
  // the connection completes in the background: send a hello and wait for OnHelloAck.
  // Takes ownership of the bootstrap socket `sock` in every case.
  static Result<std::shared_ptr<Peer>> Connect(UcxContext* ctx, const std::string& worker_address,
                                               int sock, std::string name, PeerDelegate* delegate,
                                               const PeerOptions& options);
  // Progress thread. Adopts the endpoint UCX created for a client whose hello arrived, with the
  // client's bootstrap socket `sock` (owned from now on), and attaches it to the context.
  static Result<std::shared_ptr<Peer>> Adopt(UcxContext* ctx, ucp_ep_h ep, int sock,
                                             std::string name, PeerDelegate* delegate,
                                             const PeerOptions& options);
  ~Peer() override;

  const std::string& name() const { return name_; }
  bool closed() const { return closed_; }
  size_t incoming_sessions() const { return incoming_.size(); }
  std::string Describe() const;

  // `token` is what the listener's bootstrap answer carried.
  void SendHello(uint64_t token);
  void SendFetchRequest(uint64_t session, const std::string& key);
  void SendFetchError(uint64_t session, const Status& status);
  // Sends the kResult of an incoming payload handed to OnPayload, and forgets it.
  void FinishIncoming(uint64_t session, const Status& status);
  // Fails an incoming payload now (its sender gets `status`); no-op if unknown.
  void DropIncoming(uint64_t session, const Status& status);
  // Drops incoming payloads idle longer than the idle timeout.
  void Sweep(std::chrono::steady_clock::time_point now);
  // Fails everything, detaches and closes the endpoint (force: without flushing).
  void Close(bool force, const Status& why);

  // Outgoing payloads (driven by SendPayload).
  void StartOutgoing(const std::shared_ptr<OutgoingSession>& os);
  void PostFrame(const std::shared_ptr<OutgoingSession>& os, size_t index, uint64_t checksum);
  void FinishFrames(const std::shared_ptr<OutgoingSession>& os);
  void AbortOutgoing(const std::shared_ptr<OutgoingSession>& os);

  // FrameSink
  ucs_status_t OnFrame(const void* header, size_t header_len, void* data, size_t len,
                       const ucp_am_recv_param_t* param) override;
  void OnEndpointError(ucs_status_t status) override;
  void OnContextShutdown() override;

 private:
  enum class Part : uint8_t { kMissing, kReceiving, kVerifying, kDone };
  // One incoming payload (progress thread, except the read-only fields a verification reads).
  struct Incoming {
    uint64_t id = 0;
    uint64_t token = 0;
    PayloadDescriptor desc;
    std::vector<StagingRef> buffers;
    std::vector<uint64_t> checksums;  // announced by each tensor frame
    std::vector<Part> parts;
    size_t done = 0;
    bool end_seen = false;
    bool delivering = false;
    bool dead = false;
    std::chrono::steady_clock::time_point last_activity;
  };
  // A frame in flight; owns the AM header (UCX reads it until completion) and what the data
  // points into.
  struct SendOp {
    FrameHeader hdr;
    std::string data;
    std::shared_ptr<Peer> peer;
    std::shared_ptr<OutgoingSession> os;
    std::shared_ptr<Registration> reg;
  };
  // A rendezvous receive in flight; holds the buffer UCX writes into even if the session fails.
  struct RecvOp {
    std::shared_ptr<Peer> peer;
    std::shared_ptr<Incoming> session;
    size_t index;
    StagingRef buffer;
  };

  Peer(UcxContext* ctx, ucp_ep_h ep, int sock, std::string name, PeerDelegate* delegate,
       const PeerOptions& options);
  void WatchSocket();
  void SendControl(FrameType type, uint64_t session, uint64_t token, uint64_t arg,
                   std::string data);
  void Transmit(SendOp* op, const void* data, size_t len, uint32_t flags, ucp_mem_h memh);
  static void OnSendDone(void* request, ucs_status_t status, void* user_data);
  void OnFrameSent(const std::shared_ptr<OutgoingSession>& os, ucs_status_t status);
  void MaybeSendEnd(const std::shared_ptr<OutgoingSession>& os);
  void SetAck(OutgoingSession& os, Result<uint64_t> ack);
  void SetResult(OutgoingSession& os, const Status& status);

  void OnHeader(const FrameHeader& h, std::string_view data);
  ucs_status_t OnTensor(const FrameHeader& h, void* data, size_t len, bool rndv);
  void OnEnd(const FrameHeader& h);
  void OnAck(const FrameHeader& h, std::string_view data);
  void OnResult(const FrameHeader& h, std::string_view data);
  void OnCancel(const FrameHeader& h);
  static void OnRecvDone(void* request, ucs_status_t status, size_t length, void* user_data);
  void OnReceived(const std::shared_ptr<Incoming>& s, size_t index, ucs_status_t status);
  void StartVerify(const std::shared_ptr<Incoming>& s, size_t index);
  void OnVerified(const std::shared_ptr<Incoming>& s, size_t index, bool ok);
  void MaybeDeliver(const std::shared_ptr<Incoming>& s);
  void Fail(std::shared_ptr<Incoming> s, const Status& status, bool send_result = true);
  uint64_t AssignSession();

  UcxContext* const ctx_;
  ucp_ep_h ep_;
  int sock_;  // the bootstrap connection, our liveness signal
  const std::string name_;
  PeerDelegate* delegate_;
  const PeerOptions options_;
  bool closed_ = false;
  bool error_pending_ = false;
  uint64_t next_session_;
  std::unordered_map<uint64_t, std::shared_ptr<Incoming>> incoming_;
  std::unordered_map<uint64_t, std::shared_ptr<OutgoingSession>> outgoing_;  // by token
};

}  // namespace kvc::transport
