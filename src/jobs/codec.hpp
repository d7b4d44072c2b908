#pragma once
// Header lines as one opaque value, for the stores (an SQLite BLOB column, a Redis hash field):
// length-prefixed, so names and values may hold any bytes (no escaping, no UTF-8 assumption).
#include <optional>
#include <string>
#include <string_view>

#include "jobs/job.hpp"

namespace gatehouse::jobs {

std::string encode_fields(const Fields& fields);
// nullopt: truncated or malformed (a store's record corrupted or written by something else).
std::optional<Fields> decode_fields(std::string_view data);

}  // namespace gatehouse::jobs
