#pragma once
// Every filter's config section, in one explicit list: config/ reads and writes only the shared
// keys and takes this list from its caller, so it never includes a filter, and a filter missing
// here fails every test that uses its key instead of being dropped by the linker.
#include "config/sections.hpp"

namespace gatehouse::filters {

// Built on first use; the order is the order of the keys in `gatehouse check`'s output.
const config::Sections& config_sections();

}  // namespace gatehouse::filters
