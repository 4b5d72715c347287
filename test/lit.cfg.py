# lit configuration for the moec test suite.
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "moec"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in", "unit",
                   "Inputs", "e2e", "reference", "runtime"]

config.substitutions.append(("%moec_src_root", config.moec_src_root))
config.substitutions.append(("%moec_obj_root", config.moec_obj_root))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["moe-opt", "moec"], [config.moec_tools_dir])

# CUDA code generation needs the toolkit (libdevice, ptxas), not a GPU.
if os.path.exists(os.path.join(config.cuda_toolkit, "nvvm", "libdevice",
                               "libdevice.10.bc")):
    config.available_features.add("cuda-toolkit")
    config.substitutions.append(("%cuda_toolkit", config.cuda_toolkit))
if config.ptxas and os.path.exists(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))
