"""Attaching a registered LoRA adapter's weights to the served model, all or nothing.

    model = attach_adapter(model, registry / "v3", "v3")   # the base model, or a PeftModel

peft puts an adapter's LoRA layers into the model before it reads the weights file, so
a file it cannot read (cut short by a full disk, say) would leave the model answering
through a freshly initialised adapter: for the first adapter, the base model itself. Here
the first adapter's weights are read before the model is touched, and a later adapter
that fails is deleted again, so a failed load changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def attach_adapter(model: Any, path: Path, name: str) -> Any:
    """``model`` with the adapter at ``path`` loaded as ``name`` (wrapped in a
    ``PeftModel`` when it is the first); on failure ``model`` is as it was."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return _wrap_with_first_adapter(model, path, name)
    try:
        model.load_adapter(str(path), adapter_name=name)
    except BaseException:
        if name in model.peft_config:
            model.delete_adapter(name)
        raise
    return model


def _wrap_with_first_adapter(model: Any, path: Path, name: str) -> Any:
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    config = PeftConfig.from_pretrained(str(path))
    weights = load_peft_weights(str(path), device="cpu")  # an unreadable file fails here, before any change
    wrapped = PeftModel(model, config, adapter_name=name)
    try:
        set_peft_model_state_dict(wrapped, weights, adapter_name=name)
    except BaseException:
        wrapped.unload()  # takes the injected layers out again
        raise
    return wrapped.eval()
