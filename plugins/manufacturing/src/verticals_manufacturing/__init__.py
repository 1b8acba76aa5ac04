"""verticals-manufacturing: machine failure prediction pipelines."""
