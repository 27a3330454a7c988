// kvcompact: the command-line front of the compactor (see commands.h for usage and exit codes).
#include <exception>
#include <iostream>

#include "services/cli/commands.h"

int main(int argc, char** argv) {
  try {
    return kvc::cli::Main(argc, argv, std::cout, std::cerr);
  } catch (const std::exception& e) {  // e.g. std::bad_alloc: report, never crash silently
    std::cerr << "error: internal: " << e.what() << "\n";
    return kvc::cli::kExitRuntime;
  }
}
