"""Secrets never leave through our outputs: the Redactor on its own."""

from diagnostics.redact import MASK, Redactor, presence, secret_values

ENV = {
    "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz123456",
    "HUGGING_FACE_HUB_TOKEN": "hf_ZYXWVUTSRQPONMLKJIHGFEDCBA654321",
    "HF_ENDPOINT": "https://mirror-user:mirr0rPassw0rd@hub-mirror.example.com/?token=endpointtoken123",
    "HTTPS_PROXY": "http://proxyuser:s3cretProxyPass@proxy.corp:3128",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "HOME": "/home/user",
    "PATH": "/usr/bin",
}
SECRETS = ["hf_abcdefghijklmnopqrstuvwxyz123456", "hf_ZYXWVUTSRQPONMLKJIHGFEDCBA654321", "mirr0rPassw0rd",
           "endpointtoken123", "s3cretProxyPass", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]


def test_environment_secrets_and_url_credentials_are_masked():
    redact = Redactor(ENV)
    text = "\n".join(f"{k}={v}" for k, v in ENV.items())
    out = redact(text)
    for secret in SECRETS:
        assert secret not in out, secret
    assert "HOME=/home/user" in out and "PATH=/usr/bin" in out
    assert "http://proxyuser:***@proxy.corp:3128" in out


def test_token_shapes_from_logs_are_masked_without_the_environment():
    redact = Redactor({})
    log = ("requests.exceptions.HTTPError: 401 for url https://huggingface.co/api/models?token=hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
           "Authorization: Bearer hf_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
           "aws_access_key_id=AKIAABCDEFGHIJKLMNOP aws_secret_access_key=abcdefghijABCDEFGHIJ0123456789abcdefghij")
    out = redact(log)
    assert "hf_aaaa" not in out and "hf_bbbb" not in out and "AKIAABCDEFGHIJKLMNOP" not in out
    assert "abcdefghijABCDEFGHIJ0123456789abcdefghij" not in out
    assert MASK in out


def test_presence_is_shown_values_are_not():
    assert presence(ENV, ["HF_TOKEN", "HF_HUB_OFFLINE"]) == {"HF_TOKEN": "set", "HF_HUB_OFFLINE": "unset"}
    assert "hf_abcdefghijklmnopqrstuvwxyz123456" in secret_values(ENV)
    assert "/home/user" not in secret_values(ENV)
