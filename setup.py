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

extensions = [
    Extension("ceecore._kernels._columns", ["src/ceecore/_kernels/_columns.pyx"], extra_compile_args=["-O3"]),
    Extension(
        "ceecore._kernels._tally",
        ["src/ceecore/_kernels/_tally.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "ceecore._kernels._scores",
        ["src/ceecore/_kernels/_scores.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "ceecore._kernels._trees",
        ["src/ceecore/_kernels/_trees.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "ceecore._kernels._accounts",
        ["src/ceecore/_kernels/_accounts.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        include_path=["src"],
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    )
)
