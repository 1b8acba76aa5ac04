"""verticals-flows as a verticals plugin: it adds the ``run`` and scheduling commands (being built)."""
