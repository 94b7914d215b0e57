"""Model pipeline: split, train (PyTorch), export ONNX, quantize INT8, validate, publish, bench."""

import os

# MKL (PyTorch's CPU matrix products) picks its code path by CPU unless told to use one that
# every x86-64 CPU runs: set before torch first calls MKL, so retraining gives the same floats on
# AVX2 and AVX-512 machines (measured in tests/test_pipeline.py). A value set by the user wins.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
