// `kvcompact put | lookup | fetch | stats`: the client library (services/client/client.h) from
// the command line, against a running fleet of kvcompactd workers.
//
//   kvcompact put    --workers W --in DUMP.safetensors [--tokens-from-metadata | --tokens IDS]
//                    [--method am] [--ratio 10] [--budget 0] [--allocator default]
//                    [--am-selection highest] [--selector okdmd] [--seed 0]
//                    [--heldout-fraction 0.2] [--gate-min-cosine 0] [--option KEY=VALUE]...
//                    [KEY FLAGS] [--json]
//   kvcompact lookup --workers W (--in DUMP | --tokens IDS --layout L:KV:Q:D:DTYPE)
//                    [SPEC FLAGS] [KEY FLAGS] [--json]
//   kvcompact fetch  --workers W (--in DUMP | --tokens IDS --layout ...) --out OUT.safetensors
//                    [SPEC FLAGS] [KEY FLAGS] [--json]
//   kvcompact stats  --workers W [--json]
//
//   W          host:thrift_port[:ucx_port],...  (client_options.h)
//   KEY FLAGS  [--tenant ""] [--model M] [--block-size 256] [--hash sha256|xxh3_128]
//              [--ucx auto|off|required] [--timeout-ms 0 (the client's default per operation)]
//   --option   any CompactionSpec field by dotted name (services/rpc/convert.h), repeatable
//
// Token ids (the prefix hash chain is built from them; remote_tokens.h):
//   --tokens IDS              "1,2,3" or "[1,2,3]" (with --in: exactly the dump's token count);
//   otherwise the dump's metadata "tokens" when it lists the dump's T token ids;
//   otherwise ids derived from the dump's content (a note on stderr says so), unless
//   --tokens-from-metadata demands the metadata (then its absence is a usage error).
// The model id of the key is --model, else the dump's metadata "model", else "default". Every
// client of a deployment must use the same tenant, model, block size and hash to share entries.
//
// put compacts the dump on the fleet and stores it; lookup prints the longest stored prefix of
// the tokens (a miss is not an error); fetch writes the compacted cache of that prefix to --out;
// stats prints each worker's health and counters.
//
// Exit codes: 0 ok (lookup: hit or miss); 1 runtime error, including "unavailable: recompute"
// (no worker could serve), fetch finding no stored prefix, and a put whose result failed its
// quality gate; 2 bad usage (flags, a spec out of range, unreadable token ids). Errors go to
// `err` as "error: <status>". In builds without KVC_BUILD_SERVICES the commands exist but fail
// with exit code 2, saying so.
//
// Thread safety: RemoteCommands is used by one thread (the CLI's main).
#pragma once

#include <memory>
#include <ostream>

namespace CLI {
class App;
}

namespace kvc::cli {

// Registers put, lookup, fetch and stats on `app` (before parsing); after parsing, Run() the one
// that was chosen, if parsed().
class RemoteCommands {
 public:
  explicit RemoteCommands(CLI::App& app);
  ~RemoteCommands();
  bool parsed() const;
  int Run(std::ostream& out, std::ostream& err);

  struct Flags;

 private:
  std::unique_ptr<Flags> flags_;
};

}  // namespace kvc::cli
