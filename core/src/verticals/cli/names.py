"""One way for every command to turn what a user typed into a pipeline name.

``credit_risk``, an alias, or ``finance.credit_risk`` mean the same pipeline in ``score``, ``train``
and ``models``. A model whose plugin is no longer installed is still found in the store by its
qualified name (or a unique short name), and commands that need the plugin say which distribution
to install instead of "unknown pipeline".
"""

from __future__ import annotations

from typing import Any

from verticals.errors import NotFoundError

__all__ = ["installed_pipeline", "stored_pipeline"]


def _store_match(name: str, stored: list[str]) -> str | None:
    if name in stored:
        return name
    matches = [q for q in stored if q.split(".", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def stored_pipeline(name: str, store: Any) -> str:
    """The qualified pipeline name ``name`` means for the model store.

    An installed pipeline's alias or short name is resolved through the plugin registry; otherwise the
    store's own pipelines are matched (a plugin may have been uninstalled since training).

    Raises:
        NotFoundError: neither an installed pipeline nor one with models; lists those with models.
    """
    from verticals.registry import get_registry

    try:
        return get_registry().pipeline(name).qualified_name
    except NotFoundError as exc:
        stored = store.pipelines()
        found = _store_match(name, stored)
        if found is not None:
            return found
        raise NotFoundError(f"no pipeline {name!r} installed or in the model store {store.models_dir}; "
                            f"pipelines with models: {', '.join(stored) or 'none'}",
                            hint=exc.hint or "list them with `verticals models list`") from None


def _trained_by(manifest: dict[str, Any]) -> str | None:
    plugin = manifest.get("plugin")
    if not isinstance(plugin, dict):
        return None
    dist, version = plugin.get("distribution"), plugin.get("version")
    if not dist:
        return None
    return f"{dist}=={version}" if version else str(dist)


def installed_pipeline(name: str, home: Any = None) -> str:
    """The qualified name of an installed pipeline; for one only the model store knows, say what to install.

    Raises:
        NotFoundError: the pipeline is unknown, or its plugin is not installed (naming the distribution
            that trained its models).
    """
    from verticals.registry import get_registry
    from verticals.store import ModelStore

    try:
        return get_registry().pipeline(name).qualified_name
    except NotFoundError as exc:
        store = ModelStore(home)
        try:
            found = _store_match(name, store.pipelines())
        except Exception:  # an unreadable store must not hide the original error
            found = None
        if found is None:
            raise
        try:
            dist = _trained_by(store.resolve(found, "latest").manifest)
        except Exception:
            dist = None
        if dist:
            package = dist.split("==")[0]
            raise NotFoundError(f"pipeline {found} was trained by {dist}, which is not installed",
                                hint=f"install it (pip install {package}) and run the command again") from None
        raise NotFoundError(f"pipeline {found} has models in {store.models_dir} but no installed plugin "
                            "provides it", hint="install the plugin that trained it ('verticals models show "
                            f"{found}' names it)") from exc
