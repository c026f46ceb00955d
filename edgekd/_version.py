"""The package version, in a module of its own: submodules read it without importing the API façade."""

__version__ = "0.1.0"
