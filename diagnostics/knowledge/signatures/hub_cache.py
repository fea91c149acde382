"""Hub and cache: the files from_pretrained needs cannot be found, fetched or trusted."""

from __future__ import annotations

from typing import List

from .base import CLIP, Cause, Need, PROBLEM_OR_NOTE, Pattern, Signature, _EMPTY, _HTTP, _NET, _OFFLINE, _PREFETCH, _PROXY, _READONLY, _TLS

SIGNATURES: List[Signature] = [
    Signature(
        "K01", "clip-tokenizer-load", "CLIP tokenizer cannot be loaded",
        patterns=(
            Pattern(r"Can't load tokenizer for '(?P<repo>[^']+)'",
                    label="transformers < 5 catch-all (every tokenizer file resolved to nothing)",
                    versions=({"transformers": "<5"},), wrapper=True),
            Pattern(r"(?P<repo>\S+) is not a local folder and is not a valid model identifier listed on "
                    r"'https://huggingface\.co/models'",
                    label="repo not found, or gated/unauthorised on transformers 4.22-4.x",
                    versions=({"transformers": ">=4.22,<5"},), wrapper=True),
            Pattern(r"OSError: \[Errno 30\] Read-only file system: '[^']*\.lock'",
                    label="read-only cache and the file is not cached (transformers 4.19.2)"),
            Pattern(r"`vocab` and `merges` must be both be from memory or both filenames",
                    label="cached tokenizer file missing or broken (transformers 5.x)",
                    versions=({"transformers": ">=5"},)),
            Pattern(r"JSONDecodeError", frames=r"tokenization_clip|CLIPTokenizer|tokenization_utils",
                    label="a cached tokenizer file is truncated or not JSON"),
            Pattern(r"expected str, bytes or os\.PathLike object, not NoneType",
                    frames=r"tokenization_clip|CLIPTokenizer|tokenization_utils",
                    label="vocab/merges resolved to nothing (transformers 4.2x-4.4x, TypeError in CLIPTokenizer.__init__)"),
            Pattern(r"requires the protobuf library", frames=r"tokenization_|CLIPTokenizer|from_pretrained|FrozenCLIP",
                    label="transformers 4.5x without protobuf: the slow-tokenizer fallback after the files failed",
                    wrapper=True),
            Pattern(operation="text-encoder-load", exception=r"^(?!.*(?:OutOfMemory|Cuda|CUDA|KeyboardInterrupt)).",
                    label="any error while building the tokenizer or text encoder (FrozenCLIPEmbedder.__init__)"),
        ),
        cause="transformers could not find the CLIP tokenizer files locally and could not download them. The "
              "message is a catch-all: no network, an offline switch with an empty cache, a same-named local "
              "folder, a cache in another place than this transformers reads, a gated/blocked download, a "
              "read-only or corrupted cache, or TLS/proxy trouble all print it.",
        fix=_PREFETCH,
        reproduce=(Need("the CLIP tokenizer loads and works here", ("tokenizer.functional",)),),
        causes=(
            Cause("K01.b", "Offline switch on, files not in the cache", (_OFFLINE, _EMPTY),
                  "Either allow downloads (unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) where the Hub is "
                  "reachable, or keep offline mode and provision the cache first. " + _PREFETCH),
            Cause("K01.a", "No network to the Hub, files not in the cache", (_NET, _EMPTY),
                  _PREFETCH + " If a mirror is reachable, set HF_ENDPOINT to it (only if it has the repo)."),
            Cause("K01.c", f"A local folder named like the repo ({CLIP}) shadows it",
                  (Need("a folder named like the repo id exists in the working directory", ("cache.shadowing-dir",),
                        refutes=("ok", "info")),),
                  f"Rename or remove the folder `{CLIP}` under the directory the model is started from, or make it "
                  "complete (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, config.json)."),
            Cause("K01.g", "Files are cached, but where this transformers version does not look",
                  (Need("the cache location differs from where the files are", ("cache.location",)),
                   Need("HF_ENDPOINT differs from the one the cache was filled through", ("hub.endpoint",),
                        required=False)),
                  "Set the cache variable this transformers version reads (4.19: TRANSFORMERS_CACHE or "
                  "$HF_HOME/transformers; 4.22-4.4x: TRANSFORMERS_CACHE/HF_HOME, not HF_HUB_CACHE; 5.x: "
                  "HF_HUB_CACHE/HF_HOME), or move the files there."),
            Cause("K01.e", "The Hub refused the download (gated repo, 401/403, proxy HTML page, 5xx)",
                  (_HTTP,),
                  "Accept the model's terms and use a token with read access, or fix the proxy that answers "
                  "with an HTML page; then download again."),
            Cause("K01.i", "The cache is read-only and the files are not in it",
                  (_READONLY, _EMPTY),
                  "Fill the cache once with write access, or point HF_HOME at a writable directory."),
            Cause("K01.j", "A cached file is incomplete or corrupted",
                  (Need("the cache holds incomplete or broken files", ("cache.incomplete",)),),
                  f"Delete the repo from the cache (`hf cache rm {CLIP}` or remove "
                  "models--openai--clip-vit-large-patch14) and download it again."),
            Cause("K01.k", "TLS interception (certificate not trusted)", (_TLS,),
                  "Point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at the corporate CA bundle."),
            Cause("K01.l", "A broken or unreachable proxy", (_PROXY,),
                  "Fix or unset HTTPS_PROXY / HTTP_PROXY, or add the Hub to NO_PROXY."),
        ),
        context=("compat.tokenizer-silent-empty",),
        links=("https://github.com/CompVis/stable-diffusion/issues/90",
               "https://github.com/invoke-ai/InvokeAI/issues/34",
               "https://github.com/huggingface/transformers/issues/17611",
               "https://huggingface.co/docs/transformers/installation#offline-mode"),
    ),
    Signature(
        "K02", "hub-offline-cached-files", "Model files neither downloadable nor in the cache",
        patterns=(
            Pattern(r"We couldn't connect to '(?P<endpoint>[^']+)' to load (?:this file|the files|this model), (?:and )?"
                    r"couldn't find (?:it|them) in the cached files",
                    label="transformers >= 4.22 (cached_file)", versions=({"transformers": ">=4.22"},),
                    wrapper=True),
            Pattern(r"Cannot find the requested files in the disk cache and outgoing traffic has been disabled",
                    label="huggingface_hub, offline mode"),
            Pattern(r"(?:^|\.)OfflineModeIsEnabled(?::|$)",
                    label="huggingface_hub's offline-mode error class (a request refused while HF_HUB_OFFLINE is on)"),
            Pattern(r"An error happened while trying to locate the file on the Hub and we cannot find the "
                    r"requested files in the local cache", label="huggingface_hub, Hub unreachable",
                    wrapper=True),
            Pattern(r"Can't load (?:the )?(?:model|config|configuration)(?: file)? (?:for|of) '(?P<repo>[^']+)'",
                    label="transformers < 5 catch-all for model and config files", wrapper=True),
            Pattern(r"Connection error, and we cannot find the requested files in the cached path",
                    label="transformers < 4.22", versions=({"transformers": "<4.22"},), wrapper=True),
        ),
        cause="A model file (e.g. CLIPTextModel's config.json) is not in the local cache and the Hub cannot be "
              "asked: the offline switch is on, or the network is down. With transformers 5.x this is the "
              "first visible error, because the tokenizer no longer raises.",
        fix=_PREFETCH,
        reproduce=(Need("the model files are missing from the cache here", ("cache.model-missing",),
                        confirms=("fail",)),),
        causes=(
            Cause("K02.b", "Offline switch on, files not in the cache", (_OFFLINE, _EMPTY), _PREFETCH),
            Cause("K02.a", "No network to the Hub, files not in the cache", (_NET, _EMPTY), _PREFETCH),
            Cause("K02.g", "Files are cached where this version does not look",
                  (Need("the cache location differs from where the files are", ("cache.location",)),),
                  "Set HF_HOME / HF_HUB_CACHE (or TRANSFORMERS_CACHE for transformers < 5) to the cache that "
                  "holds the files."),
        ),
        context=("compat.tokenizer-silent-empty",),
        links=("https://huggingface.co/docs/transformers/installation#offline-mode",),
    ),
    Signature(
        "K26", "hub-invalid-token", "An invalid Hugging Face token is sent",
        patterns=(
            Pattern(r"Invalid credentials in Authorization header", scope="any"),
            Pattern(r"401 Client Error: Unauthorized for url: \S*huggingface\.co", scope="any",
                    label="requests-era huggingface_hub"),
        ),
        cause="HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the saved token file holds a revoked or mistyped token; the Hub "
              "rejects every request that carries it, even for public repos.",
        fix="`hf auth logout` (or unset HF_TOKEN / HUGGING_FACE_HUB_TOKEN), log in with a valid token, or set "
            "HF_HUB_DISABLE_IMPLICIT_TOKEN=1 for public repos.",
        causes=(
            Cause("K26.a", "The Hub rejects the configured token",
                  (Need("the Hub answers 401 to this machine's requests", ("hub.http-status",),
                        confirms=PROBLEM_OR_NOTE),),
                  "Replace or remove the token."),
        ),
        links=("https://github.com/huggingface/sentence-transformers/issues/3436",),
    ),
    Signature(
        "K27", "hub-gated-repo", "Gated repository: access not granted",
        patterns=(
            Pattern(r"GatedRepoError"),
            Pattern(r"You are trying to access a gated repo", label="transformers >= 4.3x"),
            Pattern(r"403 Client Error: Forbidden for url: \S*huggingface\.co", scope="any",
                    label="HTTP status line only (requests)"),
            Pattern(r"(?:401|403) (?:Client Error|Forbidden|Unauthorized)\S*.{0,80}(?:gated|restricted|accept the conditions)",
                    scope="any", label="HTTP status with the gated-repo notice"),
            Pattern(r"Cannot access gated repo for url", scope="any"),
            Pattern(r"Access to model \S+ is restricted", scope="any"),
        ),
        cause="The repository requires accepting its terms and an authenticated request; this request had no "
              "token, or a token of an account without access.",
        fix="Accept the terms on the model page with your account, create a token with read access, and provide "
            "it (`hf auth login` or HF_TOKEN) on the server; or provision the files offline.",
        causes=(
            Cause("K27.a", "The Hub answers 401/403 with X-Error-Code GatedRepo",
                  (Need("the Hub refuses the file request", ("hub.http-status",), confirms=PROBLEM_OR_NOTE),),
                  "Accept the terms and use a token with access."),
        ),
        links=("https://huggingface.co/docs/hub/models-gated",),
    ),
    Signature(
        "K28", "hub-tls-proxy", "TLS interception or a broken proxy",
        patterns=(
            Pattern(r"CERTIFICATE_VERIFY_FAILED", scope="any", label="certificate verification failed"),
            Pattern(r"SSLCertVerificationError", scope="any"),
            Pattern(r"ProxyError|Unable to connect to proxy", scope="any", label="proxy unreachable"),
            Pattern(r"Can't connect to HTTPS URL because the SSL module is not available", scope="any",
                    label="Windows conda without Library/bin on PATH"),
        ),
        cause="A corporate proxy re-signs TLS with its own CA that Python's bundle does not trust, or the "
              "configured HTTP(S)_PROXY is unreachable, or the ssl module cannot load.",
        fix="Set REQUESTS_CA_BUNDLE and SSL_CERT_FILE to the corporate CA bundle, fix HTTPS_PROXY / NO_PROXY, "
            "or (conda on Windows) put Library/bin on PATH.",
        causes=(
            Cause("K28.a", "TLS to the Hub fails here", (_TLS,),
                  "Point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at the CA that signs the proxy's certificates."),
            Cause("K28.b", "The configured proxy is unreachable", (_PROXY,),
                  "Fix or unset HTTPS_PROXY / HTTP_PROXY; add the Hub to NO_PROXY if it is reachable directly."),
        ),
        links=("https://github.com/huggingface/transformers/issues/17611",
               "https://github.com/basujindal/stable-diffusion/issues/12"),
    ),
    Signature(
        "K29", "hub-retries", "Startup waits on Hub retries (looks like a hang)",
        patterns=(
            Pattern(r"'[^']*' thrown while requesting (?:HEAD|GET) \S+", scope="line", blocking=False,
                    label="huggingface_hub >= 1.0 retry log"),
            Pattern(r"Retrying in \d+(?:\.\d+)?s \[Retry \d+/\d+\]", scope="line", blocking=False,
                    label="huggingface_hub backoff"),
        ),
        cause="huggingface_hub retries each file request 5 times with backoff (1, 2, 4, 8, 8 s) when the Hub is "
              "unreachable; one model load can wait minutes before failing or (transformers 5) silently "
              "degrading.",
        fix="With a complete cache set HF_HUB_OFFLINE=1 so nothing is requested; lower HF_HUB_ETAG_TIMEOUT; or "
            "make the Hub reachable.",
        blocking=False,
        causes=(
            Cause("K29.a", "The Hub is unreachable and the offline switch is off",
                  (_NET, Need("offline mode is off although everything is cached", ("cache.offline-flag",),
                              confirms=("warn",), refutes=("fail",), required=False)),
                  "Provision the cache and set HF_HUB_OFFLINE=1."),
        ),
    ),
    Signature(
        "K31", "transformers-cache-migration", "transformers cache migration failed (4.19 → 4.22+ layout)",
        patterns=(
            Pattern(r"There was a problem when trying to (?:write in your cache folder|move your cache)",
                    scope="any", blocking=False, label="migration warning"),
            Pattern(r"The cache for model files in Transformers v4\.22\.0 has been updated", scope="any",
                    blocking=False, label="migration notice"),
            Pattern(r"You are offline and the cache for model files in Transformers v4\.22\.0 has been updated",
                    scope="any", label="offline with an old-layout cache"),
            Pattern(r"(?:PermissionError|OSError): \[Errno (?:13|30)\]", frames=r"move_cache|move_to_new_cache",
                    blocking=False, label="the migration's own error"),
        ),
        cause="transformers >= 4.22 moves the old flat cache to the hub layout once (keyed on version.txt); on a "
              "read-only or shared cache it fails, and offline it cannot migrate at all, so every from_pretrained "
              "misses.",
        fix="Run `python -c 'from transformers.utils import move_cache; move_cache()'` once with write access, or "
            "point HF_HOME at a cache already in the hub layout.",
        causes=(
            Cause("K31.a", "The cache is not writable",
                  (_READONLY,),
                  "Migrate once with write access."),
            Cause("K31.b", "The cache is in the old layout or elsewhere",
                  (Need("the cache location or layout does not fit this transformers", ("cache.location",)),),
                  "Point HF_HOME at a hub-layout cache."),
        ),
        blocking=False,
    ),
    Signature(
        "K34", "hub-network", "The network to the Hub fails (reset, timeout, name resolution)",
        patterns=(
            Pattern(r"Connection reset by peer|ConnectionResetError|RemoteDisconnected|Connection aborted|"
                    r"ConnectionAbortedError|IncompleteRead|ChunkedEncodingError", scope="any",
                    label="connection dropped"),
            Pattern(r"ReadTimeout(?:Error)?|ConnectTimeout(?:Error)?|Read timed out|timed out|TimeoutError|"
                    r"_ssl\.c:\d+: The handshake operation timed out", scope="any", label="timeout (also inside TLS)"),
            Pattern(r"Temporary failure in name resolution|Name or service not known|getaddrinfo failed|"
                    r"nodename nor servname provided|Failed to resolve|NameResolutionError", scope="any",
                    label="name resolution"),
            Pattern(r"NewConnectionError|Network is unreachable|No route to host|Connection refused|"
                    r"Max retries exceeded with url", scope="any", label="cannot connect"),
            Pattern(r"SSLError\(.*(?:EOF occurred|UNEXPECTED_EOF|DECRYPTION_FAILED|WRONG_VERSION_NUMBER|"
                    r"Connection reset)", scope="any", label="TLS connection broken (not a certificate problem)"),
        ),
        cause="The request to the Hub failed below HTTP: the connection was reset or timed out (also during the "
              "TLS handshake), or the host name did not resolve. A firewall, a flaky link, a proxy that drops "
              "long downloads or a DNS without internet gives these.",
        fix="Make the Hub reachable (or set HF_ENDPOINT to a reachable mirror), retry with a larger "
            "HF_HUB_DOWNLOAD_TIMEOUT / HF_HUB_ETAG_TIMEOUT; or provision the cache on a machine with network and "
            "run with HF_HUB_OFFLINE=1.",
        causes=(
            Cause("K34.a", "The Hub cannot be reached from here", (_NET,),
                  "Fix DNS/routing to huggingface.co, or provision the cache and go offline."),
            Cause("K34.b", "The configured proxy breaks the connection", (_PROXY,),
                  "Fix or unset HTTPS_PROXY / HTTP_PROXY."),
            Cause("K34.c", "TLS to the Hub fails", (_TLS,),
                  "Check the TLS path (proxy interception, MTU) to huggingface.co."),
        ),
        links=("https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables",),
    ),
    Signature(
        "K35", "hub-server-error", "The Hub answered with a server error (5xx)",
        patterns=(
            Pattern(r"5\d\d Server Error:? [\w -]*for url: \S*(?:huggingface\.co|hf\.co)", scope="any",
                    label="requests status line"),
            Pattern(r"(?:500 Internal Server Error|502 Bad Gateway|503 Service (?:Temporarily )?Unavailable|"
                    r"504 Gateway Time-?out)", scope="any", label="HTTP status"),
            Pattern(r"HfHubHTTPError: 5\d\d", scope="any", label="huggingface_hub"),
        ),
        cause="The Hub (or a proxy in front of it) failed the request: an outage, rate limiting at the edge, or a "
              "proxy that cannot reach it. Nothing on this machine is wrong unless a proxy answers.",
        fix="Retry later (status.huggingface.co); with a complete cache set HF_HUB_OFFLINE=1 so start-up does not "
            "depend on the Hub; check the proxy when only this network sees the error.",
        causes=(
            Cause("K35.a", "The Hub answers file requests with an error status", (_HTTP,),
                  "Retry later, or provision the cache and go offline."),
            Cause("K35.b", "A proxy answers instead of the Hub", (_PROXY,), "Fix the proxy or bypass it."),
        ),
        links=("https://status.huggingface.co/",),
    ),
]
