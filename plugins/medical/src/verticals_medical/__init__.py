"""verticals-medical: medical image classification from DICOM and image folders, de-identified, explained."""

__version__ = "0.1.0"
