"""Harvest connector tests."""
