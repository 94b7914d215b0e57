"""Reliability suite: fuzzed and hostile traffic, process faults and soak on a real Triton."""
