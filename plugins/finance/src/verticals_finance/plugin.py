"""verticals-finance plugin entry point (being built)."""
