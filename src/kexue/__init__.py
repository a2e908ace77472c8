"""kexue: techniques from the 2021 Scientific Spaces (kexue.fm) posts as tested PyTorch software."""

__version__ = "0.1.0"
