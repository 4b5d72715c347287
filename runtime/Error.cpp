//===- Error.cpp - Status objects -----------------------------------------===//

#include "Error.h"

#include <algorithm>
#include <cstring>

struct moe_status {
  moe_status_code code;
  std::string message;
};

namespace {
// Returned when even the status cannot be allocated; never freed.
moe_status outOfMemoryStatus{MOE_STATUS_OUT_OF_MEMORY, "out of memory"};
} // namespace

namespace moert::detail {

moe_status *makeStatus(moe_status_code code, const char *message) noexcept {
  try {
    return new moe_status{code, message};
  } catch (...) {
    return &outOfMemoryStatus;
  }
}

void requireArg(const void *pointer, const char *function,
                const char *argument) {
  if (!pointer)
    fail(MOE_STATUS_INVALID_ARGUMENT, "{}: argument '{}' is NULL", function,
         argument);
}

std::string joinNames(const std::vector<std::string> &names) {
  constexpr size_t shown = 8;
  std::vector<std::string> head(names.begin(),
                                names.begin() + std::min(names.size(), shown));
  return fmt::format("{}{}", fmt::join(head, ", "),
                     names.size() > shown
                         ? fmt::format(" and {} more", names.size() - shown)
                         : "");
}

std::string errnoMessage(int err) {
  char buffer[256];
  // GNU strerror_r returns the message, which may not be `buffer`.
  return strerror_r(err, buffer, sizeof(buffer));
}

} // namespace moert::detail

extern "C" {

moe_status_code moe_status_get_code(const moe_status *status) {
  return status ? status->code : MOE_STATUS_OK;
}

const char *moe_status_get_message(const moe_status *status) {
  return status ? status->message.c_str() : "";
}

void moe_status_free(moe_status *status) {
  if (status != &outOfMemoryStatus)
    delete status;
}

const char *moe_status_code_name(moe_status_code code) {
  switch (code) {
  case MOE_STATUS_OK:
    return "ok";
  case MOE_STATUS_INVALID_ARGUMENT:
    return "invalid argument";
  case MOE_STATUS_NOT_FOUND:
    return "not found";
  case MOE_STATUS_IO_ERROR:
    return "I/O error";
  case MOE_STATUS_INVALID_FILE:
    return "invalid file";
  case MOE_STATUS_INCOMPATIBLE_MODEL:
    return "incompatible model";
  case MOE_STATUS_MODEL_FAILED:
    return "model failed";
  case MOE_STATUS_OUT_OF_MEMORY:
    return "out of memory";
  case MOE_STATUS_UNSUPPORTED:
    return "unsupported";
  case MOE_STATUS_INTERNAL:
    return "internal error";
  case MOE_STATUS_NON_FINITE:
    return "non-finite value";
  case MOE_STATUS_DEVICE_ERROR:
    return "device error";
  }
  return "unknown";
}

const char *moe_runtime_version(void) { return "0.1.0"; }

} // extern "C"
