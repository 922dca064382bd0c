"""odkd's version, in a module of its own so that code inside the package (the SynthPose
annotations record it) reads it without importing the package root and, through it, the API."""
__version__ = "0.1.0"
