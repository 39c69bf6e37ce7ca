"""openvla: an OpenVLA reproduction as a library (data, actions, model, training, HF format, evaluation, serving).

Importing the package stays light; heavy dependencies (torch, TensorFlow, transformers) load in the submodules.
The Hugging Face classes register themselves with transformers' Auto classes as soon as transformers is imported
(``openvla/hf/hook.py``), so after ``import openvla`` an export loads with ``AutoModelForImageTextToText`` /
``AutoProcessor`` and no ``trust_remote_code``. ``openvla.AutoModelForVision2Seq`` is the name OpenVLA users know
(transformers 5 dropped it): an alias of ``AutoModelForImageTextToText``.
"""

from openvla.hf.hook import install as _install_hf_hook

__version__ = "0.1.0"

_install_hf_hook()

_AUTO_NAMES = {
    "AutoModelForVision2Seq": "AutoModelForImageTextToText",
    "AutoModelForImageTextToText": "AutoModelForImageTextToText",
    "AutoProcessor": "AutoProcessor",
    "AutoConfig": "AutoConfig",
}


def __getattr__(name: str):  # PEP 562: transformers is imported only when one of these names is used
    if name in _AUTO_NAMES:
        import transformers

        from openvla.hf.registration import register

        register()
        return getattr(transformers, _AUTO_NAMES[name])
    raise AttributeError(f"module 'openvla' has no attribute {name!r}")
