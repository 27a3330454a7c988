#include "storage/options.h"

namespace kvc::storage {

RocksTierOptions RocksTierOptions::Warm() { return RocksTierOptions{}; }

RocksTierOptions RocksTierOptions::Cold() {
  RocksTierOptions o;
  o.compression = Compression::kZstd;
  o.blob_compression = Compression::kZstd;
  o.write_buffer_size = uint64_t{64} << 20;
  return o;
}

}  // namespace kvc::storage
