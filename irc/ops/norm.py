"""Norm ops."""
