"""cache.* and tokenizer.functional rules, fed with hand-made facts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from diagnostics.clip_files import PROBE_IDS
from diagnostics.findings import Status, parse_fix
from diagnostics.probes.cache import OfflineState
from diagnostics.probes.hub import HubFacts
from diagnostics.probes.hub.facts import Endpoint
from diagnostics.probes import needed_models as nm
from diagnostics.rules import cache as rules

V5 = {"transformers": "5.24.0", "safetensors": "0.8.0", "huggingface_hub": "2.4.0"}
V419 = {"transformers": "4.19.2", "huggingface_hub": "0.10.1"}
CWD = "/srv/app"
CLIP = "openai/clip-vit-large-patch14"


def clip_model(versions=V5, **over):
    model = nm.model_entry(CLIP, "FrozenCLIPEmbedder", "default", nm.clip_text_groups(versions),
                           Path("/nonexistent"), tokenizer_check="clip",
                           config_key="model.params.cond_stage_config.params.version")
    return replace(model, **over)


def resolution(model, missing=(), layout="hub", where="/cache/hub", corrupt=()):
    groups, files = [], {}
    for g in model["groups"]:
        miss = g["names"][0] in missing
        groups.append({"purpose": g["purpose"], "names": g["names"], "required": g["required"],
                       "satisfied": not miss, "resolved": None if miss else g["names"][0]})
        for n in g["names"]:
            files[n] = {"state": "corrupt" if n in corrupt else ("missing" if miss else "cached"), "path": f"{where}/{n}",
                        "problem": "not valid JSON" if n in corrupt else None}
    req_missing = [g["names"][0] for g in groups if g["required"] and not g["satisfied"]]
    return {"layout": layout, "where": where, "groups": groups, "files": files, "missing": req_missing,
            "corrupt": list(corrupt), "complete": not req_missing and not corrupt}


def locations(where="/cache/hub"):
    return {"hub": {"path": where, "decided_by": "HF_HOME + /hub"},
            "transformers": {"path": where, "decided_by": "HF_HOME + /hub", "layout": "hub", "rule": "", "ignored": []},
            "endpoint": "https://huggingface.co", "set_vars": {}}


OFF = OfflineState(hf_hub_offline=None, transformers_offline=None, hub_offline=False, effective=False,
                   honoured=["HF_HUB_OFFLINE"], notes=[])
ON = replace(OFF, effective=True, hf_hub_offline="1")
HUB_ENDPOINT = Endpoint(url="https://huggingface.co", display="https://huggingface.co", source="default", valid=True,
                        host="huggingface.co")
DOWN = HubFacts(endpoint=HUB_ENDPOINT,
                steps={"dns": {"status": "fail", "error": "gaierror: [Errno -2] Name or service not known",
                               "target": "endpoint"}},
                files=[], reachable=False)


def up(model, outcome="ok"):
    files = [{"model": model["ref"], "file": n, "required": g["required"], "outcome": outcome,
              "size": 1000, "status_code": 200} for g in model["groups"] for n in g["names"]]
    return HubFacts(endpoint=HUB_ENDPOINT, files=files, reachable=outcome == "ok")


def missing_finding(model, res, offline=OFF, hub=DOWN, versions=V5, config=None):
    return rules.rule_model_missing(model, res, offline, hub, versions, locations(), config, CWD, None)


def test_everything_cached_is_ok():
    m = clip_model()
    f = missing_finding(m, resolution(m), hub=HubFacts(skipped="not needed"))
    assert f.status is Status.OK and "resolves offline" in f.summary


def test_seed_scenario_missing_and_no_network_fails_with_a_text_encoder_only_download():
    m = clip_model()
    f = missing_finding(m, resolution(m, missing=["vocab.json", "merges.txt", "config.json", "model.safetensors"]))
    assert f.status is Status.FAIL and f.blocking
    assert "hub.dns" in f.summary
    assert ("hf download openai/clip-vit-large-patch14 vocab.json merges.txt tokenizer_config.json "
            "special_tokens_map.json tokenizer.json config.json model.safetensors --local-dir") in f.fix
    assert "pytorch_model.bin" not in f.fix  # one weights format, not the whole repo
    assert "version: /srv/app/models/openai--clip-vit-large-patch14" in f.fix
    assert "HF_HUB_OFFLINE=1" in f.fix


def test_missing_but_downloadable_is_a_non_blocking_warning():
    m = clip_model()
    f = missing_finding(m, resolution(m, missing=["config.json"]), hub=up(m))
    assert f.status is Status.WARN and not f.blocking
    first = f.fix_steps[0]
    assert first.number == 1 and first.code.startswith("hf download openai/clip-vit-large-patch14")


def test_offline_mode_with_missing_files_fails_and_lifts_offline_for_the_download():
    m = clip_model()
    f = missing_finding(m, resolution(m, missing=["config.json"]), offline=ON, hub=up(m))
    assert f.status is Status.FAIL and "offline mode is on" in f.summary
    assert "HF_HUB_OFFLINE=0 hf download" in f.fix


def test_files_the_hub_does_not_have_are_left_out_of_the_command():
    m = clip_model()
    hub = up(m)
    for f in hub.files:
        if f["file"] in ("tokenizer.json", "model.safetensors"):
            f["outcome"] = "file-not-found"
    assert rules.files_to_fetch(m, hub.files) == [
        "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json", "pytorch_model.bin"]


def test_legacy_cache_fix_uses_a_local_directory_and_transformers_offline():
    m = clip_model(V419)
    res = resolution(m, missing=["vocab.json"], layout="legacy", where="/cache/transformers")
    f = missing_finding(m, res, versions=V419)
    assert f.status is Status.FAIL
    # huggingface_hub 0.10 has no download CLI and must not be upgraded in place under transformers 4.19
    assert "python3 -m venv /tmp/hf-download" in f.fix
    assert "pytorch_model.bin" in f.fix and "TRANSFORMERS_OFFLINE=1" in f.fix


@pytest.mark.parametrize("hub_version,cli", [("2.4.0", "hf download"), ("0.20.3", "huggingface-cli download"),
                                             ("0.10.1", "/tmp/hf-download/bin/hf download"), (None, "/tmp/hf-download")])
def test_download_command_matches_the_installed_huggingface_hub(hub_version, cli):
    cmd = rules.download_command(CLIP, ["vocab.json"], {"huggingface_hub": hub_version}, cache_dir="/my cache")
    assert cli in cmd and "--cache-dir '/my cache'" in cmd


def test_local_directory_lacking_files_fails_with_a_fill_command():
    m = clip_model(kind="local", path="/models/clip", repo_id=None)
    f = missing_finding(m, resolution(m, missing=["merges.txt"], layout="local", where="/models/clip"))
    assert f.status is Status.FAIL and "/models/clip lacks merges.txt" in f.summary
    assert "--local-dir /models/clip" in f.fix


def test_other_endpoint_cache_names_the_endpoint_to_use():
    m = clip_model(V419)
    res = resolution(m, missing=["vocab.json"], layout="legacy")
    res["files"]["vocab.json"] = {"state": "other-endpoint", "cached_endpoint": "https://huggingface.co"}
    f = missing_finding(m, res, versions=V419)
    assert f.fix_steps[0].code == "export HF_ENDPOINT=https://huggingface.co"
    assert "through the endpoint https://huggingface.co" in f.cause


@pytest.mark.parametrize("offline,incomplete,status", [
    (ON, ["x"], Status.FAIL), (ON, [], Status.OK), (OFF, ["x"], Status.OK), (OFF, [], Status.INFO),
])
def test_offline_flag_matrix(offline, incomplete, status):
    hub = HubFacts(skipped="x") if offline.effective else HubFacts(files=[], reachable=True)
    assert rules.rule_offline_flag(offline, incomplete, V5, hub).status is status


def test_offline_flag_everything_cached_but_hub_down_warns():
    f = rules.rule_offline_flag(OFF, [], V5, DOWN)
    assert f.status is Status.WARN and "HF_HUB_OFFLINE=1" in f.fix


def test_offline_flag_ignored_by_transformers_419_warns_with_the_right_variable():
    state = replace(OFF, notes=["HF_HUB_OFFLINE is set but transformers 4.19.2 reads only TRANSFORMERS_OFFLINE"],
                    hf_hub_offline="1")
    f = rules.rule_offline_flag(state, [], V419, None)
    assert f.status is Status.WARN and "TRANSFORMERS_OFFLINE=1" in f.fix


def test_location_warns_about_variables_this_version_ignores():
    loc = locations()
    loc["transformers"].update(ignored=["TRANSFORMERS_CACHE"], rule="transformers 5.x: ...")
    loc["set_vars"] = {"TRANSFORMERS_CACHE": "/data/tc"}
    loc["transformers_version"] = "5.24.0"
    f = rules.rule_location(loc)
    assert f.status is Status.WARN and "export HF_HUB_CACHE=/data/tc" in f.fix


@pytest.mark.parametrize("can,status", [(False, Status.FAIL), (True, Status.WARN)])
def test_corrupt_needed_file_blocks_only_when_it_cannot_be_downloaded_again(can, status):
    m = clip_model()
    res = resolution(m, corrupt=["vocab.json"])
    scan = {"exists": True, "path": "/cache/hub", "incomplete": [], "warnings": []}
    f = rules.rule_incomplete(scan, [m], {CLIP: res}, {CLIP: can}, V5)
    assert f.status is status and "vocab.json" in f.summary
    assert "hf download openai/clip-vit-large-patch14 vocab.json --force-download" in f.fix


def test_incomplete_blob_of_a_needed_repo_warns_with_the_rm_command():
    m = clip_model()
    inc = {"repo": CLIP, "path": "/cache/hub/models--openai--clip-vit-large-patch14/blobs/ab.incomplete", "size": 7}
    scan = {"exists": True, "path": "/cache/hub", "incomplete": [inc], "warnings": []}
    f = rules.rule_incomplete(scan, [m], {CLIP: resolution(m)}, {}, V5)
    assert f.status is Status.WARN and f"rm -f {inc['path']}" in f.fix


def test_incomplete_blob_of_another_repo_is_information():
    scan = {"exists": True, "path": "/c", "incomplete": [{"repo": "x/y", "path": "/c/p.incomplete"}], "warnings": []}
    assert rules.rule_incomplete(scan, [clip_model()], {CLIP: resolution(clip_model())}, {}, V5).status is Status.INFO


def test_read_only_cache_fails_only_when_something_must_be_downloaded():
    w = {"/cache/hub": {"writable": False, "error": "read-only file system", "checked": "/cache"}}
    assert rules.rule_not_writable(w, [CLIP]).status is Status.FAIL
    assert rules.rule_not_writable(w, []).status is Status.INFO
    assert rules.rule_not_writable({"/c": {"writable": True}}, [CLIP]).status is Status.OK


@pytest.mark.parametrize("free,need,status", [
    (10 ** 9, 2 * 10 ** 9, Status.FAIL), (2 * 10 ** 9, 1.95 * 10 ** 9, Status.WARN), (10 ** 11, 10 ** 9, Status.OK),
    (10 ** 9, None, Status.INFO), (10 ** 9, 0, Status.OK),
])
def test_disk_space(free, need, status):
    assert rules.rule_disk_space({"/c": free}, {"/c": need}).status is status


def test_shadow_dir_in_working_directory_fails_with_a_rename():
    s = {"model": CLIP, "base": "working directory", "base_path": CWD, "path": f"{CWD}/{CLIP}", "is_dir": True,
         "present": [], "complete": False, "missing": ["vocab.json"]}
    f = rules.rule_shadowing([s], V5)
    assert f.status is Status.FAIL and f"mv {CWD}/{CLIP} {CWD}/{CLIP}.bak" in f.fix
    assert "2-token" in f.summary
    assert "make sure you don't have a local directory" in rules.rule_shadowing([s], V419).summary


def test_complete_shadow_dir_is_information():
    s = {"model": CLIP, "base": "working directory", "base_path": CWD, "path": f"{CWD}/{CLIP}", "is_dir": True,
         "present": [], "complete": True, "missing": []}
    assert rules.rule_shadowing([s], V5).status is Status.INFO
    assert rules.rule_shadowing([], V5).status is Status.OK


GOOD = {"ran": True, "class": "CLIPTokenizer", "vocab_size": 49408, "ids": PROBE_IDS, "forced_offline": False}


def test_tokenizer_functional_ok():
    assert rules.rule_tokenizer_functional(GOOD, clip_model(), "fix", V5).status is Status.OK


def test_tokenizer_functional_catches_the_silent_two_token_tokenizer():
    facts = dict(GOOD, vocab_size=2, ids=[0, 2, 2, 2, 2], forced_offline=True)
    f = rules.rule_tokenizer_functional(facts, clip_model(), "The fix.", V5)
    assert f.status is Status.FAIL and "vocabulary 2" in f.summary and f.fix == "The fix."
    assert "run offline because the Hub is unreachable" in f.summary


def test_tokenizer_functional_exception_and_timeout_fail():
    err = dict(GOOD, error_type="OSError", error="Can't load tokenizer for 'openai/clip-vit-large-patch14'.")
    assert rules.rule_tokenizer_functional(err, clip_model(), "", V419).status is Status.FAIL
    slow = {"ran": False, "timed_out": True, "timeout": 60.0}
    assert "did not finish within 60 s" in rules.rule_tokenizer_functional(slow, clip_model(), "", V5).summary


def test_tokenizer_functional_skips_without_clip_model_or_transformers():
    assert rules.rule_tokenizer_functional(None, None, "", V5).status is Status.SKIP
    assert rules.rule_tokenizer_functional(None, clip_model(), "", {}).status is Status.SKIP


def test_needed_models_says_when_the_default_was_assumed():
    facts = nm.needed_models(None, [], V5, Path("/nonexistent"))
    f = rules.rule_needed_models(facts)
    assert f.status is Status.INFO and "No config given" in f.summary


def test_openclip_model_fix_points_pretrained_at_the_weights_file():
    sd2 = "model:\n  params:\n    cond_stage_config:\n      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder\n"
    data = nm.parse_yaml_subset(sd2)
    (m,) = nm.models_from_config(data, V5, Path("/nonexistent"))
    f = missing_finding(m, resolution(m, missing=["open_clip_model.safetensors"]), config="/cfg/v2-inference.yaml")
    assert f.status is Status.FAIL
    assert "hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K open_clip_model.safetensors --local-dir" in f.fix
    assert "model.params.cond_stage_config.params.version: /srv/app/models/" in f.fix
    assert "open_clip accepts a file path" in f.fix


def test_model_id_option_fix_says_to_load_the_directory():
    m = nm.model_entry("org/thing", "--model-id", "--model-id", nm.generic_groups(V5), Path("/nonexistent"))
    f = missing_finding(m, resolution(m, missing=["config.json"]))
    assert "load `/srv/app/models/org--thing` instead of `org/thing`" in f.fix


def test_a_checkpoint_with_clip_l_makes_provision_clip_the_first_fix(tmp_path):
    from diagnostics.context import DEFAULT_CLIP_ID
    from diagnostics.rules.cache import provision_hint

    ckpt = tmp_path / "sd15.ckpt"

    def checkpoint_with(text_encoder):
        return lambda: {"text_encoder": text_encoder}

    def unread():
        raise AssertionError("the checkpoint is read only for CLIP ViT-L/14 with a --checkpoint")

    hint = provision_hint(str(ckpt), checkpoint_with({"present": True, "kind": "clip-l"}), {"repo_id": DEFAULT_CLIP_ID})
    steps = parse_fix(hint)
    assert steps[0].text.startswith("No download needed")
    assert steps[0].code == f"python -m diagnostics provision-clip --checkpoint {ckpt} --hf-cache"
    assert steps[1].text == "Otherwise:"
    assert provision_hint(str(ckpt), unread, {"repo_id": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"}) == ""
    assert provision_hint(str(ckpt), checkpoint_with({"present": False, "kind": None}),
                          {"repo_id": DEFAULT_CLIP_ID}) == ""
    assert provision_hint(None, unread, {"repo_id": DEFAULT_CLIP_ID}) == ""
