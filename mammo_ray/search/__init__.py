"""The distributed search: search spaces, Ray Tune + Optuna, trial records, the search command."""
