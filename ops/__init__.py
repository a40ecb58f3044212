"""Tools for real stacks: the engine driver and the end-to-end verify of a deployed stack."""
