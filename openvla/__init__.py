"""openvla: an OpenVLA reproduction as a library (data, actions, model, training, HF format, evaluation, serving).

Importing the package stays light; heavy dependencies (torch, TensorFlow, transformers) load in the submodules.
"""

__version__ = "0.1.0"
