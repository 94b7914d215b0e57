"""Feature contract, the Triton preprocessing step's logic, the local Triton runner and clients."""
