// Fields of a JSON document read leniently: a missing field or one of another type reads as empty,
// so a report from another version (or a damaged one) still shows what it has.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace heapkeeper::view {

// The string at `key`, as stored (not decoded: report/json_text.h), or "".
inline std::string string_field(const nlohmann::json& object, const char* key) {
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
}

}  // namespace heapkeeper::view
