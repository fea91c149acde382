"""Can this machine reach the Hugging Face Hub the way the loaders will? (hub.*)

Each step is one test, so the report shows where the way breaks: endpoint, proxy, DNS, TCP, TLS,
and the Hub's answer for every needed model. A dead network fails only when a needed file is not
cached.
"""

import pytest

pytestmark = pytest.mark.network


def test_endpoint(diag):
    diag.check("hub.endpoint")


def test_proxy(diag):
    diag.check("hub.proxy")


def test_dns(diag):
    diag.check("hub.dns")


def test_connect(diag):
    diag.check("hub.connect")


def test_tls(diag):
    diag.check("hub.tls")


def test_http_status(diag):
    diag.check("hub.http-status")
