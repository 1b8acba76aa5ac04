"""verticals-finance: credit risk pipelines."""
