# Fails if a binary in BINARIES ('|'-separated) needs libMLIR or libLLVM,
# directly (readelf -d NEEDED entries) or transitively (ldd), or libcuda: the
# runtime dlopen()s the CUDA driver, so that it loads on machines without
# one.
find_program(READELF readelf REQUIRED)
find_program(LDD ldd REQUIRED)
string(REPLACE "|" ";" binaries "${BINARIES}")
foreach(binary IN LISTS binaries)
  execute_process(COMMAND ${READELF} -d ${binary}
    OUTPUT_VARIABLE dynamic RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "readelf -d ${binary} failed")
  endif()
  string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*" needed "${dynamic}")
  # A sanity check that the parsing works: everything needs libc.
  if(NOT needed MATCHES "libc\\.so")
    message(FATAL_ERROR "${binary}: no libc among NEEDED entries: ${needed}")
  endif()
  execute_process(COMMAND ${LDD} ${binary}
    OUTPUT_VARIABLE libraries RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "ldd ${binary} failed")
  endif()
  foreach(listing IN ITEMS "${needed}" "${libraries}")
    string(TOLOWER "${listing}" lower)
    if(lower MATCHES "lib(mlir|llvm|clang|lld)[^ \n]*")
      message(FATAL_ERROR
        "${binary} depends on ${CMAKE_MATCH_0}; the runtime must not link "
        "MLIR or LLVM:\n${listing}")
    endif()
    if(lower MATCHES "lib(cuda|cudart|nvrtc)[^ \n]*")
      message(FATAL_ERROR
        "${binary} depends on ${CMAKE_MATCH_0}; the runtime must load the "
        "CUDA driver with dlopen, never link it:\n${listing}")
    endif()
  endforeach()
  message(STATUS "${binary}: ${needed}")
endforeach()
