"""lsvit: HMDB51-style clips -> WebDataset shards (``lsvit.pipeline``) -> a trained LS-ViT (``lsvit.trainer``).

``import lsvit`` registers the LS-ViT models (``lsvit_*``) and the frame-averaged ViT baselines
(``vit_frameavg_*``) with timm, so ``timm.create_model("lsvit_small_patch16_224")`` works after it.

Registering needs timm, and timm needs torch (seconds to import), while the command-line tools must answer
``--help`` without either. So the registration runs as soon as timm is imported: at once when it already
is, else right after whoever imports it first (the model module itself, or your own ``import timm``).
"""

import importlib.abc
import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lsvit")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]


def _register_models() -> None:
    import lsvit.trainer.lsvit  # noqa: F401  its @register_model decorators run on import


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Finds timm like the other finders would, and registers the models once timm's module has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding this finder
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module) -> None:
            run_module(module)
            _register_models()

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


if "timm" in sys.modules:
    _register_models()
elif not any(isinstance(f, _AfterTimmImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterTimmImport())
