#include "services/transport/bootstrap.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "services/transport/wire.h"

namespace kvc::transport {
namespace {

using Clock = std::chrono::steady_clock;

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Reads exactly n bytes before the deadline.
Status ReadFully(int fd, char* out, size_t n, Clock::time_point deadline) {
  size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    const int rc = poll(&p, 1, RemainingMs(deadline));
    if (rc == 0) return Status::DeadlineExceeded("no answer from the worker's bootstrap socket");
    if (rc < 0 && errno == EINTR) continue;
    const ssize_t r = read(fd, out + got, n - got);
    if (r == 0) return Status::Unavailable("worker closed the bootstrap connection");
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Status::Unavailable(std::string("bootstrap read: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return Status::OK();
}

Status ConnectWithDeadline(int fd, const SocketAddress& addr, Clock::time_point deadline) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) {
    if (errno != EINPROGRESS) {
      return Status::Unavailable("connect to " + AddressToString(addr.storage) + ": " +
                                 std::strerror(errno));
    }
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, RemainingMs(deadline)) == 0) {
      return Status::DeadlineExceeded("connect to " + AddressToString(addr.storage) + " timed out");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return Status::Unavailable("connect to " + AddressToString(addr.storage) + ": " +
                                 std::strerror(err));
    }
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Status::OK();
}

}  // namespace

Result<int> ListenSocket(const SocketAddress& addr) {
  const int fd = socket(addr.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0 ||
      listen(fd, 128) != 0) {
    const Status st = Status::Unavailable("listen on " + AddressToString(addr.storage) + ": " +
                                          std::strerror(errno));
    close(fd);
    return st;
  }
  return fd;
}

Result<SocketAddress> LocalAddress(int fd) {
  SocketAddress out;
  out.length = sizeof(out.storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&out.storage), &out.length) != 0) {
    return Status::IOError(std::string("getsockname: ") + std::strerror(errno));
  }
  return out;
}

Result<ServerHello> ClientHandshake(const SocketAddress& addr, std::chrono::milliseconds timeout,
                                    int* fd_out) {
  const auto deadline = Clock::now() + timeout;
  const int fd = socket(addr.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + std::strerror(errno));
  auto fail = [fd](Status st) {
    close(fd);
    return st;
  };
  if (Status st = ConnectWithDeadline(fd, addr, deadline); !st.ok()) return fail(st);
  std::string hello;
  Put(&hello, kBootstrapMagic);
  Put(&hello, kWireVersion);
  Put(&hello, uint16_t{0});
  Put(&hello, uint64_t{0});
  if (!WriteAll(fd, hello)) return fail(Status::Unavailable("bootstrap write failed"));
  char head[20];
  if (Status st = ReadFully(fd, head, sizeof(head), deadline); !st.ok()) return fail(st);
  if (Get<uint32_t>(head) != kBootstrapMagic) {
    return fail(Status::Corruption("the bootstrap answer is not from a kvcompact worker"));
  }
  const auto code = static_cast<Code>(Get<uint16_t>(head + 6));
  const uint32_t len = Get<uint32_t>(head + 16);
  if (len > kMaxWorkerAddressBytes) return fail(Status::Corruption("worker address too long"));
  ServerHello out;
  out.token = Get<uint64_t>(head + 8);
  out.worker_address.resize(len);
  if (Status st = ReadFully(fd, out.worker_address.data(), len, deadline); !st.ok())
    return fail(st);
  if (code != Code::kOk) return fail(Status(code, "worker refused: " + out.worker_address));
  *fd_out = fd;
  return out;
}

Status ParseClientHello(const char* bytes) {
  if (Get<uint32_t>(bytes) != kBootstrapMagic) return Status::Corruption("bad bootstrap magic");
  if (Get<uint16_t>(bytes + 4) != kWireVersion) {
    return Status::NotSupported("client speaks wire version " +
                                std::to_string(Get<uint16_t>(bytes + 4)));
  }
  return Status::OK();
}

std::string EncodeServerHello(const Status& status, uint64_t token, const std::string& address) {
  std::string out;
  const std::string& body = status.ok() ? address : status.message();
  Put(&out, kBootstrapMagic);
  Put(&out, kWireVersion);
  Put(&out, static_cast<uint16_t>(status.code()));
  Put(&out, token);
  Put(&out, static_cast<uint32_t>(body.size()));
  out += body;
  return out;
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace kvc::transport
