"""LIME explanations of a trained classifier, in the layout of the paper's Figure 8."""
