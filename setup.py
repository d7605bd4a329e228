"""Declares the compiled kernels; everything else lives in pyproject.toml.

Set CEECORE_NO_OPENMP=1 to build without OpenMP (kernels then run on one thread), and
CEECORE_SANITIZE=address,undefined for a sanitizer build of the kernels (CI runs the kernel
tests on one: see .ci/sanitizers).
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = os.environ.get("CEECORE_NO_OPENMP", "") in ("", "0")
if openmp and sys.platform == "darwin":
    openmp = False  # Apple clang ships without OpenMP; build single-threaded there.
# No fused multiply-adds: the kernels must round as numpy and the plain references do.
compile_args = ["-O3", "-ffp-contract=off"]
openmp_args = ["-fopenmp"] if openmp else []
sanitize = os.environ.get("CEECORE_SANITIZE", "")
sanitize_args = [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"] \
    if sanitize else []
if sanitize:
    compile_args[0] = "-O1"  # keeps reports readable; the checks, not the speed, matter here


def kernel(name: str, parallel: bool = False) -> Extension:
    """The extension built from ``src/ceecore/_kernels/<name>.pyx`` (numpy headers; OpenMP if ``parallel``)."""
    return Extension(
        f"ceecore._kernels.{name}",
        [f"src/ceecore/_kernels/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args + sanitize_args + (openmp_args if parallel else []),
        extra_link_args=sanitize_args + (openmp_args if parallel else []),
    )


extensions = [kernel(name) for name in ("_columns", "_tally", "_indicators", "_scores", "_trees", "_views")]
extensions += [kernel(name, parallel=True) for name in ("_accounts", "_fit")]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["src"],
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    )
)
