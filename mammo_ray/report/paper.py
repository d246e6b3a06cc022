"""What the paper claims, as data: its tables and figures, to put beside what was measured.

Reference: R. Vaishya and P. K. Shukla, "Deep-CNN for Disease Classification Using Enhanced
Mammographic Images", 2023 (:data:`PAPER_SOURCE`).
"""

from __future__ import annotations

__all__ = [
    "PAPER_SOURCE",
    "PAPER_BACKBONES",
    "PAPER_TABLE3",
    "PAPER_TABLE4",
    "PAPER_FIRST_EPOCH_ACCURACY",
    "PAPER_FIGURE7",
    "PAPER_TABLE2",
]


PAPER_SOURCE = (
    'R. Vaishya, P. K. Shukla, "Deep-CNN for Disease Classification Using Enhanced '
    'Mammographic Images", 2023 (received 18 March 2023, accepted 05 August 2023)'
)
"""Where every ``PAPER_*`` number comes from (paper/000_9925729f7fa99309.txt)."""


PAPER_BACKBONES: dict[str, str] = {
    "vgg16_bn": "VGG",
    "resnet18": "ResNet-18",
    "mnasnet_100": "NasNet",
    "mobilenetv2_100": "MobileNet-V2",
    "densenet121": "DenseNet",
}
"""Project backbone key -> the paper's row, in the paper's row order (``mammo_ray.models``).
``mnasnet_100`` stands in for NASNet-Mobile, which timm does not have."""


PAPER_TABLE3: dict[str, dict[str, float]] = {
    "vgg16_bn": {"precision": 95.6, "recall": 95.65, "f1": 95.65, "accuracy": 95.69},
    "resnet18": {"precision": 98.89, "recall": 98.89, "f1": 98.9, "accuracy": 98.91},
    "mnasnet_100": {"precision": 94.78, "recall": 94.78, "f1": 94.78, "accuracy": 94.87},
    "mobilenetv2_100": {"precision": 89.81, "recall": 89.82, "f1": 89.82, "accuracy": 89.9},
    "densenet121": {"precision": 96.28, "recall": 96.27, "f1": 96.28, "accuracy": 96.56},
}
"""The paper's table of precision / recall / F1 / accuracy (%) per architecture, on its test
split: the table printed first (the paper's text and captions disagree on which of its
Tables 3 and 4 holds it)."""


PAPER_TABLE4: dict[str, dict[str, float]] = {
    "vgg16_bn": {"NSNA": 93.13, "NSWA": 93.9, "WSNA": 94.34, "WSWA": 95.69},
    "resnet18": {"NSNA": 96.83, "NSWA": 97.78, "WSNA": 98.2, "WSWA": 98.91},
    "mnasnet_100": {"NSNA": 92.41, "NSWA": 93.0, "WSNA": 93.85, "WSWA": 94.87},
    "mobilenetv2_100": {"NSNA": 86.62, "NSWA": 87.9, "WSNA": 88.72, "WSWA": 89.9},
    "densenet121": {"NSNA": 93.89, "NSWA": 94.86, "WSNA": 95.43, "WSWA": 96.56},
}
"""The paper's ablation (test accuracy %): No/With Segmentation x No/With Augmentation."""


PAPER_FIRST_EPOCH_ACCURACY: dict[str, float] = {
    "resnet18": 46.67,
    "densenet121": 45.59,
    "vgg16_bn": 35.07,
    "mobilenetv2_100": 37.21,
    "mnasnet_100": 36.81,
}
"""Figure 6: test accuracy (%) after the first epoch; all reach their best within 15 epochs."""


PAPER_FIGURE7: dict[str, int] = {
    "test_images": 92,
    "normal_shown": 36,
    "normal_misclassified": 1,
    "films": 322,
    "test_percent": 20,
}
"""Figure 7: 92 test images, one of the 36 normal films misclassified, from an 80:20 split of
322 films (whose test part would hold about 64)."""


_TABLE2_ROWS = (
    ("TP", "tp"),
    ("TN", "tn"),
    ("FP", "fp"),
    ("FN", "fn"),
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "f1"),
    ("Accuracy", "accuracy"),
    ("DSC", "dsc"),
)


PAPER_TABLE2: dict[str, dict[str, float]] = {
    label: dict(zip((key for _, key in _TABLE2_ROWS), values, strict=True))
    for label, values in (
        ("normal", (192, 117, 12, 1, 0.941, 0.995, 0.967, 0.960, 0.652)),
        ("calc", (24, 289, 1, 8, 0.960, 0.750, 0.842, 0.972, 0.457)),
        ("mass", (89, 221, 4, 8, 0.957, 0.957, 0.957, 0.963, 0.484)),
    )
}
"""Table 2 ("segmentation block", all 322 films) per class, as printed. Its DSC row does not
follow from its own formula DSC = 2TP / (2TP + FP + FN), which equals F1."""
