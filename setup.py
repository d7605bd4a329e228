"""Declares the compiled kernels; everything else lives in pyproject.toml.

Set CEECORE_NO_OPENMP=1 to build without OpenMP (kernels then run on one thread).
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = os.environ.get("CEECORE_NO_OPENMP", "") in ("", "0")
if openmp and sys.platform == "darwin":
    openmp = False  # Apple clang ships without OpenMP; build single-threaded there.
compile_args = ["-O3"] + (["-fopenmp"] if openmp else [])
link_args = ["-fopenmp"] if openmp else []


def kernel(name: str, parallel: bool = False) -> Extension:
    """The extension built from ``src/ceecore/_kernels/<name>.pyx`` (numpy headers; OpenMP if ``parallel``)."""
    return Extension(
        f"ceecore._kernels.{name}",
        [f"src/ceecore/_kernels/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args if parallel else ["-O3"],
        extra_link_args=link_args if parallel else [],
    )


extensions = [kernel("_columns"), kernel("_tally"), kernel("_scores"), kernel("_trees"), kernel("_accounts", parallel=True)]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["src"],
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    )
)
