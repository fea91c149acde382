"""The HTTP step of the network probe: one HEAD per needed file on `/{repo}/resolve/main/{file}` (the
request `hf_hub_download` makes), read like the Hub's answers are read: `X-Repo-Commit`, `ETag` /
`X-Linked-Etag`, `X-Linked-Size`, `X-Error-Code`, and `Location` for LFS files on a CDN host.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Mapping
from urllib.parse import urljoin, urlsplit

from ...redact import redact_url, scrub
from .facts import CaChoice, Endpoint, FileAnswer, NetTimeouts, ProxyChoice, TokenInfo
from .steps import USER_AGENT, seconds_since

MAX_PARALLEL_HEADS = 8


def classify_response(status: int, headers: Mapping[str, str], token_present: bool) -> str:
    """What a HEAD answer means for a loader (huggingface_hub's hf_raise_for_status, in words)."""
    code = headers.get("X-Error-Code") or headers.get("x-error-code") or ""
    message = (headers.get("X-Error-Message") or headers.get("x-error-message") or "").lower()
    content_type = (headers.get("Content-Type") or headers.get("content-type") or "").lower()
    commit = headers.get("X-Repo-Commit") or headers.get("x-repo-commit")
    if 200 <= status < 400:
        if not commit:
            return "not-hub"  # a captive portal, proxy page or mirror that is not Hub-compatible
        return "ok" if status < 300 else "redirect"
    if code == "GatedRepo":
        return "gated"
    if code == "EntryNotFound":
        return "file-not-found"
    if code == "RevisionNotFound":
        return "revision-not-found"
    if status == 401 and ("invalid credentials" in message or "invalid token" in message or
                          (token_present and code != "RepoNotFound")):
        return "bad-token"
    if code == "RepoNotFound" or status == 404:
        return "repo-not-found"
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "blocked" if "text/html" in content_type else "forbidden"
    if status == 407:
        return "proxy-auth"
    if status == 429:
        return "rate-limited"
    if status >= 500:
        return "server-error"
    return "http-error"


def _http_client(proxy: ProxyChoice, ca: CaChoice):
    import requests

    client = requests.Session()
    client.trust_env = False  # the proxies and CA come from the injected environment, not ours
    if proxy.raw_url:
        client.proxies = {"http": proxy.raw_url, "https": proxy.raw_url}
    client.verify = ca.cafile or ca.capath or True
    return client


def head_file(client, url: str, headers: Dict[str, str], timeouts: NetTimeouts) -> FileAnswer:
    """HEAD like huggingface_hub: follow redirects on the same origin (renamed repos), stop at a
    redirect to another host (the LFS/Xet CDN) and read the metadata from that response."""
    import requests

    started = time.perf_counter()
    target = url
    try:
        for _ in range(5):
            resp = client.head(target, headers=headers, allow_redirects=False,
                                timeout=(timeouts.connect, timeouts.http))
            location = resp.headers.get("Location")
            if 300 <= resp.status_code < 400 and location:
                next_target = urljoin(target, location)
                if urlsplit(next_target)[:2] == urlsplit(target)[:2]:
                    target = next_target
                    continue
            break
    except requests.exceptions.ProxyError as exc:
        return {"outcome": "proxy-error", "error": _short(exc), "seconds": seconds_since(started)}
    except requests.exceptions.SSLError as exc:
        return {"outcome": "tls-error", "error": _short(exc), "seconds": seconds_since(started)}
    except requests.exceptions.ConnectTimeout as exc:
        return {"outcome": "timeout", "error": f"connect timeout: {_short(exc)}", "seconds": seconds_since(started)}
    except requests.exceptions.ReadTimeout:
        return {"outcome": "timeout", "error": f"connected, but no answer within {timeouts.http:g} s",
                "seconds": seconds_since(started)}
    except requests.exceptions.RequestException as exc:
        return {"outcome": "connect-error", "error": _short(exc), "seconds": seconds_since(started)}
    return _read_answer(resp, target, "authorization" in {key.lower() for key in headers}, started)


def _read_answer(resp, target: str, token_sent: bool, started: float) -> FileAnswer:
    """The metadata of one HEAD answer, as huggingface_hub reads it."""
    answer_headers = resp.headers
    outcome = classify_response(resp.status_code, answer_headers, token_sent)
    location = answer_headers.get("Location")
    redirected = 300 <= resp.status_code < 400
    size = answer_headers.get("X-Linked-Size") or (None if redirected else answer_headers.get("Content-Length"))
    cdn_url = urljoin(target, location) if location and outcome == "redirect" else None
    return {
        "outcome": outcome, "status_code": resp.status_code, "seconds": seconds_since(started),
        "x_error_code": answer_headers.get("X-Error-Code"),
        "x_error_message": (answer_headers.get("X-Error-Message") or "")[:200] or None,
        "commit": answer_headers.get("X-Repo-Commit"),
        "etag": answer_headers.get("X-Linked-Etag") or answer_headers.get("ETag"),
        "size": int(size) if size and str(size).isdigit() else None, "content_type": answer_headers.get("Content-Type"),
        "cdn": redact_url(cdn_url) if cdn_url else None,
        "_cdn_url": cdn_url,
    }


def _short(exc: BaseException) -> str:
    text = scrub(f"{type(exc).__name__}: {exc}") or ""
    return text if len(text) < 400 else text[:400] + "..."


def probe_files(endpoint: Endpoint, models: List[Dict[str, Any]], proxy: ProxyChoice, ca: CaChoice,
                token: TokenInfo, timeouts: NetTimeouts) -> List[FileAnswer]:
    """HEAD every file of every needed Hub model, in parallel (one timeout for all)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if token.sent:
        headers["Authorization"] = f"Bearer {token.value}"
    jobs = [(model["ref"], model["repo_id"], name, group["required"],
             f"{endpoint.raw_url}/{model['repo_id']}/resolve/main/{name}")
            for model in models if model.get("kind") == "hub" and model.get("repo_id")
            for group in model["groups"] for name in group["names"]]
    if not jobs:
        return []
    client = _http_client(proxy, ca)
    try:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_HEADS, len(jobs))) as pool:
            futures = [pool.submit(head_file, client, url, headers, timeouts) for _, _, _, _, url in jobs]
            answers = []
            for (ref, repo, name, required, url), future in zip(jobs, futures):
                answer = future.result()
                answer.update(model=ref, repo_id=repo, file=name, required=required, url=redact_url(url))
                answers.append(answer)
        _check_cdn_once_per_model(client, answers, timeouts)
    finally:
        client.close()
    for answer in answers:
        answer.pop("_cdn_url", None)
    return answers


def _check_cdn_once_per_model(client, answers: List[FileAnswer], timeouts: NetTimeouts) -> None:
    """One CDN check per model: LFS weights come from another host, often the one a firewall blocks."""
    checked = set()
    for answer in answers:
        cdn = answer.pop("_cdn_url", None)
        if cdn and answer["model"] not in checked:
            checked.add(answer["model"])
            cdn_answer = head_file(client, cdn, {"User-Agent": USER_AGENT}, timeouts)
            answer["cdn_check"] = {"outcome": "ok" if cdn_answer.get("status_code") in (200, 206) else
                                   cdn_answer["outcome"], "status_code": cdn_answer.get("status_code"),
                                   "error": cdn_answer.get("error"), "seconds": cdn_answer["seconds"]}
