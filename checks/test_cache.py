"""Will every Hugging Face model the config needs load from this machine's cache? (cache.*, tokenizer.functional)"""

import pytest

pytestmark = pytest.mark.cache


def test_needed_models(diag):
    diag.check("cache.needed-models")


def test_cache_location(diag):
    diag.check("cache.location")


def test_offline_flag(diag):
    diag.check("cache.offline-flag")


def test_model_files_resolve_offline(diag):
    diag.check("cache.model-missing")


def test_no_incomplete_downloads(diag):
    diag.check("cache.incomplete")


def test_cache_writable(diag):
    diag.check("cache.not-writable")


def test_disk_space(diag):
    diag.check("cache.disk-space")


def test_no_shadowing_directory(diag):
    diag.check("cache.shadowing-dir")


def test_tokenizer_functional(diag):
    diag.check("tokenizer.functional")
