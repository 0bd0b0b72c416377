"""Training: the options (flags and their checks), the loop, checkpoints, distributed processes, the CPU allocator."""
