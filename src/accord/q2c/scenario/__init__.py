"""The consulting firm of ``examples/consulting-month.yaml``, seeded into the stand-ins."""
