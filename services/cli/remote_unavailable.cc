// RunRemote for builds without the client library (KVC_BUILD_SERVICES=OFF).
#include "services/cli/commands.h"
#include "services/cli/remote_flags.h"

namespace kvc::cli {

int RunRemote(const RemoteFlags&, std::ostream&, std::ostream& err) {
  err << "error: not_supported: this kvcompact was built without the client library "
         "(configure with KVC_BUILD_SERVICES=ON for put, lookup, fetch and stats)\n";
  return kExitUsage;
}

}  // namespace kvc::cli
