"""What setup.cfg cannot say: the design card keeps `callbacks/` and `conf/` at the top of the
repository, and they install inside the package, as `ca12.callbacks` and `ca12/conf/`, so that no
top-level `callbacks` package lands in site-packages (where another project's would collide with
it) and every config group ships by glob (a new `conf/env/<family>/` cannot be forgotten)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ca12", "ca12.*"]), "ca12.callbacks", "ca12.conf"],
    package_dir={"ca12.callbacks": "callbacks", "ca12.conf": "conf"},
    package_data={"ca12.conf": ["*.yaml", "**/*.yaml"]},
)
