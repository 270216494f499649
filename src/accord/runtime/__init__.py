"""The hub's runtime: intake, durable workflows, exactly-once effects."""
