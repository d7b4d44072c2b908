#pragma once
// ${VAR} and ${VAR:-default} in the raw config text, before YAML parsing. Line numbers are kept
// (a value containing a newline is an error), so YAML error positions still point into the file.
// `$${` is a literal `${`. References inside YAML comments are left alone, so commented-out lines
// never fail; comment detection is lexical (a '#' at line start or after a blank, outside quotes).
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::config::detail {

// Returns the value of an environment variable, nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment (getenv).
std::optional<std::string> process_env(const std::string& name);

// Throws ConfigError "SOURCE:LINE:COLUMN: ${VAR}: message" for an unset variable without default,
// a malformed reference, or a value containing a newline.
std::string interpolate(std::string_view text, const std::string& source, const EnvLookup& env);

}  // namespace gatehouse::config::detail
