"""The Hugging Face cache as the installed loaders will see it: where it is, what it holds.

`locations` computes where the cache is from the injected environment and the installed versions
(the one cache-directory resolver of the package), confirmed with huggingface_hub's own `constants`
in a child process that gets the same environment; `files` resolves each needed file offline;
`scan` looks at the cache as a whole. `probe_cache` joins them into the typed `CacheFacts`.
Nothing here downloads.
"""

from __future__ import annotations

from typing import List


from .facts import CacheFacts, HubCacheDir, ModelCache, OfflineState
from .files import (hub_cache_library, legacy_filename, repo_folder, resolve_hub_file, resolve_legacy_file,
                    resolve_local, resolve_model, validate_file)
from .locations import (CACHE_VARS, CONSTANTS_SCRIPT, DEFAULT_ENDPOINT, STAGING_ENDPOINT, cache_locations,
                        endpoint_for_transformers, expand, hf_home, hub_cache, hub_cache_dir, hub_constants, is_true,
                        offline_state, prefer_library_answer, transformers_cache)
from .scan import disk_free, nearest_existing, scan_cache, shadow_dirs, writable

# The name the provision-clip remedy imports.
_hub_lib = hub_cache_library

__all__ = [
    "CACHE_VARS", "CONSTANTS_SCRIPT", "DEFAULT_ENDPOINT", "STAGING_ENDPOINT", "CacheFacts", "HubCacheDir",
    "ModelCache", "OfflineState", "cache_locations", "disk_free", "endpoint_for_transformers", "expand", "hf_home",
    "hub_cache", "hub_cache_dir", "hub_downloads", "hub_cache_library", "hub_constants", "is_true", "legacy_filename",
    "nearest_existing", "offline_state", "probe_cache", "repo_folder", "resolve_hub_file", "resolve_legacy_file",
    "resolve_local", "resolve_model", "scan_cache", "shadow_dirs", "transformers_cache", "validate_file", "writable",
]


def hub_downloads(ctx) -> List[str]:
    """Refs of the needed Hub models with a required file not cached: what loading must download."""
    from ..needed_models import probe_needed_models

    resolutions = ctx.fact("cache", probe_cache).resolutions()
    return [model.ref for model in ctx.fact("needed_models", probe_needed_models).models
            if model.kind == "hub" and resolutions[model.ref]["missing"]]


def probe_cache(ctx) -> CacheFacts:
    """Every cache fact for one run (memoised as "cache")."""
    from ..environment import probe_environment
    from ..needed_models import probe_needed_models

    versions = ctx.fact("environment", probe_environment).packages
    needed = ctx.fact("needed_models", probe_needed_models).models
    locations = cache_locations(ctx.environ, versions)
    prefer_library_answer(locations, hub_constants(ctx))
    library = hub_cache_library()
    transformers_dir = locations["transformers"]["path"]
    paths = {transformers_dir}
    if any(model.cache_user != "transformers" for model in needed):
        paths.add(locations["hub"]["path"])
    return CacheFacts(
        locations=locations,
        offline=offline_state(ctx.environ, versions.get("transformers")),
        models=[ModelCache(model.ref, resolve_model(model, locations, library)) for model in needed],
        scan=scan_cache(transformers_dir, locations["transformers"]["layout"], library),
        writable={path: writable(path) for path in sorted(paths)},
        disk_free={path: disk_free(path) for path in sorted(paths)},
        shadow=shadow_dirs(needed, ctx.cwd, ctx.options.code_root),
        huggingface_hub_importable=library is not None,
    )
