"""Run ``openvla.hf.registration.register`` as soon as transformers is imported, without importing it ourselves.

``import openvla`` must stay light (no transformers, torch or timm: several seconds), yet users expect
``import openvla`` followed by ``AutoModelForImageTextToText.from_pretrained(export_dir)`` to just work. So
``install()`` registers at once when transformers is already imported, and otherwise puts a finder on
``sys.meta_path`` that wraps the loaders of ``transformers`` and of ``openvla.*`` submodules: after each of those
has run, the registration is attempted. It waits while an ``openvla`` module is still half-initialized (e.g.
``openvla.model.configuration`` imports transformers before defining ``OpenVLAConfig``) and happens when the
outermost such import completes. Once done, the finder removes itself. A failure is logged, never raised into
the user's import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_TARGET = "transformers"
_PACKAGE = "openvla"
_lock = threading.RLock()
_state = {"done": False, "busy": False}


def _openvla_initializing(finished: str | None = None) -> bool:
    """Whether some ``openvla`` module is still executing its body (registering now would hit it half-made).

    ``finished`` is the module whose body just completed (importlib clears its flag only after our hook returns).
    """
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name != finished and (name == _PACKAGE or name.startswith(_PACKAGE + "."))
    )


def _try_register(finished: str | None = None) -> None:
    with _lock:
        if _state["done"] or _state["busy"] or _TARGET not in sys.modules or _openvla_initializing(finished):
            return
        _state["busy"] = True
        try:
            from openvla.hf.registration import register

            register()
        except Exception as err:  # never break the user's import
            log.warning(
                "openvla: could not register the HF classes with transformers (%s: %s)", type(err).__name__, err
            )
        finally:
            _state["busy"] = False
            _state["done"] = True
            _uninstall()


class _PostImportLoader(importlib.abc.Loader):
    """Delegates to the real loader, then attempts the registration once the module body has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _try_register(finished=module.__name__)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, get_resource_reader, ...
        return getattr(self._loader, name)


class _Watcher(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if _state["done"] or not (fullname == _TARGET or fullname.startswith(_PACKAGE + ".")):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # let the regular finders answer (namespace packages, unusual loaders)
        spec.loader = _PostImportLoader(spec.loader)
        return spec


_watcher = _Watcher()


def _uninstall() -> None:
    if _watcher in sys.meta_path:
        sys.meta_path.remove(_watcher)


def install() -> None:
    """Arrange for the registration to happen with (or right after) the import of transformers."""
    if _TARGET in sys.modules:
        _try_register(finished=_PACKAGE)  # called from openvla/__init__: the package itself may be half-made
    if not _state["done"] and _watcher not in sys.meta_path:
        sys.meta_path.insert(0, _watcher)
