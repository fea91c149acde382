"""Planted secrets never reach an output: Markdown, HTML, JSON, the terminal, pytest-html, findings.json.

Secrets are planted where real deployments keep them: HF_TOKEN and HUGGING_FACE_HUB_TOKEN, a token
inside HF_ENDPOINT, a user:password proxy URL, AWS keys, a cache path, and an error log. Presence
may be shown ("set"), values may not.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakehub import closed_port

ROOT = Path(__file__).resolve().parents[1]

HF_TOKEN = "hf_PlantedTokenAbcdefghijklmnopqrstu"
HUB_TOKEN = "hf_PlantedLegacyTokenZyxwvutsrqpon"
ENDPOINT_TOKEN = "hf_EndpointTokenInsideTheUrl0123456"
PROXY_PASSWORD = "Pr0xyPassw0rdPlanted"
AWS_KEY_ID = "AKIAPLANTEDKEY000001"
AWS_SECRET = "PlantedAwsSecretKey/abcdefghijklmnopqrstu"
CACHE_TOKEN = "hf_CachePathTokenPlanted9876543210"
LOG_TOKEN = "hf_LogTokenPlantedInTheTraceback42"
SECRETS = (HF_TOKEN, HUB_TOKEN, ENDPOINT_TOKEN, PROXY_PASSWORD, AWS_KEY_ID, AWS_SECRET, CACHE_TOKEN, LOG_TOKEN)

LOG = f"""2026-01-01 12:00:00 INFO HF_TOKEN={LOG_TOKEN} python scripts/inpaint.py
Traceback (most recent call last):
  File "/app/ldm/modules/encoders/modules.py", line 103, in __init__
    self.tokenizer = CLIPTokenizer.from_pretrained(version)
requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/api/models/openai/clip-vit-large-patch14?token={LOG_TOKEN} (Authorization: Bearer {LOG_TOKEN})
"""


@pytest.fixture
def planted(tmp_path):
    port = closed_port()
    env = dict(os.environ)
    for var in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(var, None)
    env.update({
        "PYTHONPATH": str(ROOT),
        "HF_TOKEN": HF_TOKEN,
        "HUGGING_FACE_HUB_TOKEN": HUB_TOKEN,
        # a mirror behind the proxy: the proxy (a closed local port) refuses at once, so nothing waits
        "HF_ENDPOINT": f"https://mirror:{ENDPOINT_TOKEN}@hub-mirror.invalid/?token={ENDPOINT_TOKEN}",
        "HTTPS_PROXY": f"http://deploy:{PROXY_PASSWORD}@127.0.0.1:{port}",
        "https_proxy": f"http://deploy:{PROXY_PASSWORD}@127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "HF_HOME": str(tmp_path / f"cache-{CACHE_TOKEN}"),
        "LDM_DIAG_NET_TIMEOUT": "1",
    })
    log = tmp_path / "crash.log"
    log.write_text(LOG)
    return env, log


def _leaks(text):
    return [s for s in SECRETS if s in text]


def test_no_secret_in_the_report_files_or_the_terminal(tmp_path, planted):
    env, log = planted
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "report", "--out", "out", "--error-log", str(log)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    outputs = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    assert set(outputs) == {"resolution-report.md", "resolution-report.html", "resolution-report.json"}
    outputs["terminal"] = proc.stdout + proc.stderr
    for name, text in outputs.items():
        assert _leaks(text) == [], name
    # presence is shown: the proxy, the endpoint and the token source are named, their secrets are not
    assert "https_proxy" in outputs["resolution-report.json"]  # the proxy variable is named
    assert "***@hub-mirror.invalid" in outputs["resolution-report.json"]
    assert "a token is set (HF_TOKEN; value not shown)" in outputs["resolution-report.json"]


def test_no_secret_in_explain_output(tmp_path, planted):
    env, log = planted
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "diagnostics", "explain", str(log), *extra], cwd=str(tmp_path),
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, 1), proc.stderr
        assert _leaks(proc.stdout + proc.stderr) == []


@pytest.mark.skipif(sys.version_info < (3, 9), reason="pytest-html 4 needs Python 3.9")
def test_no_secret_in_the_pytest_html_report(tmp_path, planted):
    pytest.importorskip("pytest_html")
    env, _ = planted
    env["BUILD_URL"] = f"https://ci.example/job?token={HF_TOKEN}"  # pytest-metadata shows CI variables
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "checks"), "-m", "env or network or cache",
                           f"--rootdir={ROOT}", "-p", "no:cacheprovider", "--html=reports/", "-rA"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    html_report = (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    findings = (tmp_path / "reports" / "findings.json").read_text(encoding="utf-8")
    assert "hub.proxy" in findings  # the network checks ran with the planted variables
    for name, text in (("report.html", html_report), ("findings.json", findings),
                       ("terminal", proc.stdout + proc.stderr)):
        assert _leaks(text) == [], name
