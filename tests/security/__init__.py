"""Attacks as the adversaries of docs THREATS.md would run them, grouped by adversary (R, A, P, O, N, C).

Each module states the property it defends; each attack was run against the code before its fix."""
