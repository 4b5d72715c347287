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
