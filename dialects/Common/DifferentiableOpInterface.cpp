//===- DifferentiableOpInterface.cpp - Reverse-mode VJPs ------------------===//
#include "dialects/Common/DifferentiableOpInterface.h"

#include "dialects/Common/DifferentiableOpInterface.cpp.inc"
