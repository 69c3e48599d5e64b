"""Build the optional C accelerator of pyramid_kvs.storable; the rest is in pyproject.toml.

The extension is optional: where there is no C compiler or no Python headers, its
build fails with a warning and pyramid_kvs installs without it, reading and writing
Storable in pure Python with the same results.  (setup.py rather than pyproject's
ext-modules table, which setuptools still calls experimental and likely to change.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pyramid_kvs._storable_speedups",
            ["src/pyramid_kvs/_storable_speedups.c"],
            optional=True,
        )
    ]
)
