"""mammo_ray: reproduce and audit a MIAS mammogram classifier on Ray, Optuna and MLflow."""

__version__ = "0.1.0"
