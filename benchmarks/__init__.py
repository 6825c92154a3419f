"""Side-by-side benchmarks of sbqueue against its peers (see ``python -m benchmarks --help``)."""
