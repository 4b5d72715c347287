//===- Error.h - Errors inside the runtime, statuses at its boundary ------===//
//
// Inside libmoert failures are exceptions (moert::detail::Error); every C API
// function runs its body through guard(), which turns them into moe_status
// objects, so nothing ever propagates to C callers.
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_ERROR_H
#define MOERT_RUNTIME_ERROR_H

#include "moe/runtime/moert.h"

#include <fmt/format.h>

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace moert::detail {

class Error : public std::runtime_error {
public:
  Error(moe_status_code code, const std::string &message)
      : std::runtime_error(message), code(code) {}
  moe_status_code code;
};

template <typename... Args>
[[noreturn]] void fail(moe_status_code code, fmt::format_string<Args...> format,
                       Args &&...args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

/// A status object; never fails (falls back to a static out-of-memory
/// status).
moe_status *makeStatus(moe_status_code code, const char *message) noexcept;

/// Runs `body`, turning any exception into a status.
template <typename Body> moe_status *guard(Body &&body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const Error &e) {
    return makeStatus(e.code, e.what());
  } catch (const std::bad_alloc &) {
    return makeStatus(MOE_STATUS_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception &e) {
    return makeStatus(MOE_STATUS_INTERNAL, e.what());
  } catch (...) {
    return makeStatus(MOE_STATUS_INTERNAL, "unknown internal error");
  }
}

/// Fails with INVALID_ARGUMENT when a required pointer argument is NULL.
void requireArg(const void *pointer, const char *function,
                const char *argument);

/// "a, b, c" for messages: at most eight names, then "and N more".
std::string joinNames(const std::vector<std::string> &names);

/// strerror(err), thread-safe.
std::string errnoMessage(int err);

} // namespace moert::detail

#endif // MOERT_RUNTIME_ERROR_H
