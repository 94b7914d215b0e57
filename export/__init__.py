"""Model pipeline: split, train (PyTorch), export ONNX, quantize INT8, validate, publish, bench."""
