"""Example policy and directory written by ``gatehouse init --example``."""
