// The compact flags -> CompactionSpec mapping shared by `compact` and `batch` (commands.h).
#include "services/cli/commands.h"

namespace kvc::cli {

Result<CompactionSpec> BuildSpec(const CompactArgs& a) {
  CompactionSpec s;
  KVC_ASSIGN_OR_RETURN(s.method, ParseMethod(a.method));
  KVC_ASSIGN_OR_RETURN(s.allocator, ParseAllocator(a.allocator));
  KVC_ASSIGN_OR_RETURN(s.am.selection, ParseAmSelection(a.am_selection));
  KVC_ASSIGN_OR_RETURN(s.am.selector, ParseMethod(a.selector));
  s.ratio = a.ratio;
  s.budget = a.budget;
  s.seed = a.seed;
  s.threads = a.threads;
  s.heldout_fraction = a.heldout_fraction;
  s.gate.min_cosine = a.gate_min_cosine;
  s.gate.escalation = a.gate_escalation;
  s.gate.max_rounds = a.gate_max_rounds;
  s.am.ridge = a.ridge;
  s.am.refine_rounds = a.refine_rounds;
  s.am.nnls_pg_steps = a.nnls_pg_steps;
  s.am.fit_beta = !a.no_fit_beta;
  s.am.fit_values = !a.no_fit_values;
  s.am.keys_as_queries = a.keys_as_queries;
  s.am.keys_as_queries_fit = a.keys_as_queries_fit;
  KVC_RETURN_IF_ERROR(s.Validate());
  return s;
}

}  // namespace kvc::cli
