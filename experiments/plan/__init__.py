"""Planning: from a validated config to series, compiled programs, seed chunks
and tasks."""
