"""vidcorr: self-supervised dense correspondence between video frames, and label propagation."""

__version__ = "0.1.0"
