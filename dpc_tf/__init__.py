"""dpc_tf: Dense Prediction Cell architecture search for semantic segmentation (TF2/Keras 3)."""

__version__ = "0.1.0"
