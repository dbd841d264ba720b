"""dpc-tf: Dense Prediction Cell architecture search for semantic segmentation (TF2/Keras 3)."""

import os

from setuptools import find_packages, setup

_HERE = os.path.dirname(os.path.abspath(__file__))


def _readme() -> str:
  with open(os.path.join(_HERE, "README.md"), encoding="utf-8") as f:
    return f.read()


setup(
    name="dpc-tf",
    version="0.1.0",
    description="Dense Prediction Cell (DPC) architecture search, proxy task and DeepLab "
                "models for semantic segmentation in TensorFlow 2 / Keras 3",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dpc_tf", "dpc_tf.*"]),
    # The shipped gin configs (the repository's gin/ links to dpc_tf/configs/) travel with
    # the package, so `--gin_file=gin/search/fake_demo.gin` works after `pip install .`.
    package_data={"dpc_tf": ["cells/*.json", "configs/*/*.gin", "configs/*/*.csv"]},
    install_requires=[
        "tensorflow>=2.16",  # Keras 3
        "tensorflow-datasets",
        "numpy",
        "absl-py",
        "gin-config",
        "h5py",  # converted checkpoints (dpc_tf.checkpoints)
        # tensorflow-datasets 4.9 imports it to prepare any dataset but does not declare it.
        "importlib_resources",
    ],
    extras_require={
        "plots": ["matplotlib"],
        "ray": ["ray[tune]>=2.60"],
        "pascal": ["pillow", "scipy"],  # VOC palette PNGs and SBD .mat files
        "folder": ["pillow"],  # your own data (dpc_tf.data.folder): label PNGs, image sizes
        "tensorboard": ["tensorboard"],  # the search's HParams dashboard (DIR/hparams)
        "test": ["pytest", "pytest-xdist", "hypothesis", "matplotlib", "pillow", "scipy",
                 "ray[tune]>=2.60", "tensorboard"],
    },
    entry_points={"console_scripts": [
        f"dpc-{name.replace('_', '-')}=dpc_tf.{module}:run" for name, module in (
            ("train", "train"), ("evaluate", "evaluate"), ("export", "export"),
            ("predict", "predict"), ("cache_features", "cache_features"),
            ("proxy", "proxy.__main__"), ("search", "search.__main__"),
            ("model_stats", "model_stats"), ("render_cell", "render_cell"),
            ("convert_checkpoint", "convert_checkpoint"), ("benchmark", "benchmark"),
            ("reproduce", "reproduce"), ("inspect", "data.inspect"))]},
    license="Apache-2.0",
)
