"""Benchmarks of the gate core. Run each as ``python -m bench.<name>``; results land in bench/results/."""
