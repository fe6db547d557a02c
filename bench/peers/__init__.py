"""Other stacks the benchmark runs side by side with this service."""
