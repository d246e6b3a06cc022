"""Learning: configs, splits, augmentation, models, checkpoints, the trial function, evaluation
and the training command."""
