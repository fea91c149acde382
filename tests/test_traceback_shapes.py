"""Traceback parsing survives the shapes real logs come in.

Most tracebacks here are printed by a real interpreter (a child `python` running a small script
written to a temp directory), then dressed the way log shippers and terminals dress them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.knowledge.traceback import (
    Frame,
    clean_lines,
    frame_kind,
    parse_log,
    qualname_from_source,
    resolve_qualname,
)

CLIP_MESSAGE = ("Can't load tokenizer for 'openai/clip-vit-large-patch14'. If you were trying to load it from "
                "'https://huggingface.co/models', make sure you don't have a local directory with the same name. "
                "Otherwise, make sure 'openai/clip-vit-large-patch14' is the correct path to a directory "
                "containing all relevant files for a CLIPTokenizer tokenizer.")

MODULES = f'''
import warnings


def from_pretrained(version):
    try:
        open("/nonexistent/vocab.json")
    except FileNotFoundError as e:
        raise OSError({CLIP_MESSAGE!r}.format()) from e


class FrozenCLIPEmbedder:
    def __init__(self, version="openai/clip-vit-large-patch14"):
        warnings.warn("the tokenizer cache is being migrated", UserWarning)
        self.version = version
        self.tokenizer = from_pretrained(version)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    pkg = root / "ldm" / "modules" / "encoders"
    pkg.mkdir(parents=True)
    for d in (root / "ldm", root / "ldm" / "modules", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "modules.py").write_text(MODULES)
    (root / "run.py").write_text(textwrap.dedent('''
        import sys
        from ldm.modules.encoders.modules import FrozenCLIPEmbedder

        def main():
            mode = sys.argv[1] if len(sys.argv) > 1 else "chain"
            if mode == "context":
                try:
                    {}["config"]
                except KeyError:
                    FrozenCLIPEmbedder()
            elif mode == "group":
                raise ExceptionGroup("loading failed", [ValueError("bad vocab"), OSError("no merges")])
            else:
                FrozenCLIPEmbedder()

        main()
    '''))
    return root


def run_python(project: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=project, capture_output=True, text=True,
                          env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "default"})
    assert proc.returncode != 0
    return proc.stderr


@pytest.fixture(scope="module")
def chain_log(project) -> str:
    return run_python(project, "chain")


def test_real_chained_traceback_gives_final_exception_and_cause(chain_log):
    parsed = parse_log(chain_log)
    assert len(parsed.tracebacks) == 1
    tb = parsed.primary
    assert [l.exception_type for l in tb.links] == ["FileNotFoundError", "OSError"]
    assert tb.links[1].relation == "cause"
    assert tb.final.message == CLIP_MESSAGE


def test_innermost_user_frame_is_the_method_with_its_class(chain_log, project):
    parsed = parse_log(chain_log)
    frames = parsed.primary.final.frames
    init = [f for f in frames if f.function == "__init__"][0]
    resolve_qualname(init, lambda p: (Path(p).read_text(), "source file") if Path(p).is_file() else None)
    assert init.qualname == "FrozenCLIPEmbedder.__init__"
    assert init.code == "self.tokenizer = from_pretrained(version)"
    assert init.line == MODULES.splitlines().index("        self.tokenizer = from_pretrained(version)") + 1


def test_warning_lines_are_collected_apart_from_the_exception(chain_log):
    parsed = parse_log(chain_log)
    assert [w.category for w in parsed.warnings] == ["UserWarning"]
    assert parsed.warnings[0].message == "the tokenizer cache is being migrated"
    assert parsed.primary.final.exception_type == "OSError"


def test_during_handling_chain_is_a_context_link(project):
    parsed = parse_log(run_python(project, "context"))
    tb = parsed.primary
    assert [l.exception_type for l in tb.links] == ["KeyError", "FileNotFoundError", "OSError"]
    assert [l.relation for l in tb.links] == ["", "context", "cause"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
def test_exception_group_traceback(project):
    parsed = parse_log(run_python(project, "group"))
    assert parsed.has_traceback
    types = [t for _, link in parsed.exceptions() for t in [link.exception_type]]
    assert "ExceptionGroup" in types


def test_several_tracebacks_the_last_is_the_failure(chain_log, project):
    first = run_python(project, "context")
    log = first + "\nretrying with the local copy...\n" + chain_log
    parsed = parse_log(log)
    assert len([t for t in parsed.tracebacks if t.fmt == "python"]) == 2
    assert parsed.primary.start_line > len(first.splitlines())
    assert [l.exception_type for l in parsed.primary.links] == ["FileNotFoundError", "OSError"]


PREFIXES = {
    "docker compose": lambda i: "sd-api-1  | ",
    "kubectl --timestamps": lambda i: f"2025-08-09T10:00:{i % 60:02d}.123456789Z ",
    "timestamp and level": lambda i: f"2025-08-09 10:00:{i % 60:02d},{i % 1000:03d} ERROR ",
    "syslog": lambda i: f"Aug  9 10:00:{i % 60:02d} gpu-node-3 python[4242]: ",
    "kubectl --prefix": lambda i: "[pod/sd-inpaint-7d9c/server] ",
}


@pytest.mark.parametrize("style", sorted(PREFIXES))
def test_log_prefixes_on_every_line_are_stripped(chain_log, style):
    prefix = PREFIXES[style]
    log = "\n".join(prefix(i) + line for i, line in enumerate(chain_log.splitlines()))
    parsed = parse_log("booting\n" + log + "\n" + prefix(99) + "INFO shutting down")
    tb = parsed.primary
    assert tb.final.exception_type == "OSError"
    assert " ".join(tb.final.message.split()) == CLIP_MESSAGE
    assert [f.function for f in tb.final.frames][-2:] == ["__init__", "from_pretrained"]


def test_logging_exception_prefixes_only_its_first_line(chain_log):
    log = ("2025-08-09 10:00:01,002 ERROR root: model load failed\n" + chain_log
           + "2025-08-09 10:00:01,050 INFO root: exiting\n")
    tb = parse_log(log).primary
    assert tb.final.exception_type == "OSError"
    assert "exiting" not in tb.final.message


def test_ansi_colours_and_progress_bars_are_removed(chain_log):
    coloured = "\n".join(f"\x1b[31m{line}\x1b[0m" if line.startswith(("OSError", "Traceback")) else line
                         for line in chain_log.splitlines())
    log = "Loading\r 10%|#         |\r 50%|#####     |\n\x1b]0;title\x07" + coloured
    tb = parse_log(log).primary
    assert tb.final.exception_type == "OSError"
    assert "\x1b" not in tb.final.message
    assert all("\x1b" not in line for line in clean_lines(log))


def test_truncated_log_without_the_exception_line(chain_log):
    lines = chain_log.splitlines()
    cut = [i for i, l in enumerate(lines) if l.lstrip().startswith('File "') and "modules.py" in l][-1]
    parsed = parse_log("\n".join(lines[: cut + 2]))
    tb = parsed.primary
    assert tb.truncated
    assert tb.links[-1].frames and tb.links[-1].exception_type == ""


def test_truncated_log_without_the_header(chain_log):
    lines = chain_log.splitlines()
    start = [i for i, l in enumerate(lines) if l.lstrip().startswith('File "') and "run.py" in l][0]
    parsed = parse_log("\n".join(lines[start:]))
    tb = parsed.primary
    assert tb.truncated
    assert tb.final.exception_type == "OSError"
    assert tb.final.frames[0].file.endswith("run.py")


WINDOWS_LOG = r'''
Traceback (most recent call last):
  File "C:\Users\ana\stable-diffusion\scripts\txt2img.py", line 250, in main
    model = load_model_from_config(config, f"{opt.ckpt}")
  File "C:\Users\ana\stable-diffusion\ldm\modules\encoders\modules.py", line 141, in __init__
    self.tokenizer = CLIPTokenizer.from_pretrained(version)
  File "C:\Users\ana\miniconda3\envs\ldm\lib\site-packages\transformers\tokenization_utils_base.py", line 1768, in from_pretrained
    raise EnvironmentError(
  File "C:\Users\ana\miniconda3\envs\ldm\Lib\json\decoder.py", line 355, in raw_decode
    raise JSONDecodeError("Expecting value", s, err.value) from None
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)
'''


def test_windows_paths_and_frame_kinds():
    tb = parse_log(WINDOWS_LOG).primary
    kinds = [f.kind for f in tb.final.frames]
    assert kinds == ["user", "user", "library", "stdlib"]
    assert tb.innermost("user").file.endswith(r"ldm\modules\encoders\modules.py")
    assert tb.innermost("library").function == "from_pretrained"
    assert tb.final.exception_type == "json.decoder.JSONDecodeError"


def test_syntax_error_frame_without_function():
    log = textwrap.dedent('''\
        Traceback (most recent call last):
          File "/app/main.py", line 3, in <module>
            import ldm.models.diffusion.ddpm
          File "/app/ldm/models/diffusion/ddpm.py", line 12
            from __future__ import annotations
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        SyntaxError: from __future__ imports must occur at the beginning of the file
    ''')
    tb = parse_log(log).primary
    assert tb.final.exception_type == "SyntaxError"
    assert tb.final.frames[-1].function == "" and tb.final.frames[-1].line == 12
    assert tb.final.frames[-1].code == "from __future__ import annotations"


def test_log_without_traceback_has_none_but_keeps_bare_error_lines():
    parsed = parse_log("starting server\nloaded config v1-inference.yaml\nlistening on :7860\n")
    assert not parsed.has_traceback and parsed.primary is None
    parsed = parse_log("INFO start\nERROR RuntimeError: CUDA out of memory. Tried to allocate 58.00 MiB\nINFO bye\n")
    assert not parsed.has_traceback
    assert parsed.primary.fmt == "bare"
    assert parsed.primary.final.exception_type == "RuntimeError"
    assert parsed.primary.final.message == "CUDA out of memory. Tried to allocate 58.00 MiB"


def test_numpy_notice_with_header_and_frame_on_one_line():
    log = ('Traceback (most recent call last):  File "/app/run.py", line 2, in <module>\n'
           "    import torch\n"
           "RuntimeError: Numpy is not available\n")
    tb = parse_log(log).primary
    assert tb.final.frames[0].file == "/app/run.py"
    assert tb.final.exception_type == "RuntimeError"


def test_multiline_message_with_blank_line_is_kept_whole():
    log = textwrap.dedent('''\
        Traceback (most recent call last):
          File "/app/x.py", line 1, in <module>
            hf_hub_download("openai/clip-vit-large-patch14", "config.json")
        huggingface_hub.errors.GatedRepoError: 401 Client Error.

        Cannot access gated repo for url https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/config.json.
        Access to model openai/clip-vit-large-patch14 is restricted.
    ''')
    final = parse_log(log).primary.final
    assert final.exception_type == "huggingface_hub.errors.GatedRepoError"
    assert final.message.splitlines()[-1] == "Access to model openai/clip-vit-large-patch14 is restricted."
    assert final.short_type == "GatedRepoError"


# --- pytest's formats (real pytest output) --------------------------------------------------------


@pytest.fixture(scope="module")
def pytest_outputs(project) -> dict:
    (project / "test_clip.py").write_text(
        "from ldm.modules.encoders.modules import FrozenCLIPEmbedder\n\n\ndef test_clip():\n    FrozenCLIPEmbedder()\n")
    (project / "pytest.ini").write_text("[pytest]\n")
    outs = {}
    # pytest's own output: the installed plugins (hypothesis, xdist, ...) are not loaded, which also
    # halves each run's start-up (https://docs.pytest.org/en/stable/reference/reference.html#envvar-PYTEST_DISABLE_PLUGIN_AUTOLOAD)
    env = {"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for tb in ("long", "short", "line", "native", "auto"):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               f"--tb={tb}", "test_clip.py"], cwd=project, capture_output=True, text=True, env=env)
        outs[tb] = proc.stdout + proc.stderr
    return outs


@pytest.mark.parametrize("tb", ["long", "short", "line", "native", "auto"])
def test_pytest_failure_formats(pytest_outputs, tb):
    parsed = parse_log(pytest_outputs[tb])
    primary = parsed.primary
    assert primary is not None, pytest_outputs[tb]
    assert primary.final.exception_type == "OSError"
    assert " ".join(primary.final.message.split()) == CLIP_MESSAGE
    chain = [l.exception_type for l in primary.links]
    if tb == "line" and pytest.version_tuple < (9,):
        assert chain == ["OSError"]  # pytest 8's --tb=line prints only the last exception's location
    else:
        assert chain == ["FileNotFoundError", "OSError"]
    if tb != "line":  # --tb=line keeps one location per exception
        names = [f.function for f in primary.final.frames]
        assert "__init__" in names and names[-1] == "from_pretrained"


def test_pytest_long_format_names_the_class_from_self(pytest_outputs):
    frames = parse_log(pytest_outputs["long"]).primary.final.frames
    init = [f for f in frames if f.function == "__init__"][0]
    resolve_qualname(init, lambda p: None)
    assert init.qualname == "FrozenCLIPEmbedder.__init__"
    assert init.qualname_source == "pytest locals"


# --- frame kinds and class names ---------------------------------------------------------------


@pytest.mark.parametrize("path, kind", [
    ("/usr/lib/python3.10/site-packages/torch/serialization.py", "library"),
    ("/opt/conda/envs/ldm/lib/python3.8/json/decoder.py", "stdlib"),
    ("/venv/lib/python3.11/site-packages/ldm/modules/encoders/modules.py", "user"),
    ("/app/ldm/modules/encoders/modules.py", "user"),
    ("<frozen importlib._bootstrap>", "internal"),
    ("<string>", "user"),
    (r"C:\Python310\Lib\site-packages\transformers\hub.py", "library"),
    (r"C:\Python310\Lib\json\decoder.py", "stdlib"),
])
def test_frame_kind(path, kind):
    assert frame_kind(path) == kind


SOURCE = '''
class FrozenCLIPEmbedder:
    def __init__(self, version):
        self.tokenizer = CLIPTokenizer.from_pretrained(version)


class FrozenT5Embedder:
    def __init__(self, version):
        self.tokenizer = T5Tokenizer.from_pretrained(version)


def outer():
    def __init__():
        return 1
    return __init__
'''


def test_qualname_from_source_exact_line_moved_line_and_nested():
    assert qualname_from_source(SOURCE, "__init__", 4, "self.tokenizer = CLIPTokenizer.from_pretrained(version)") == (
        "FrozenCLIPEmbedder.__init__", True)
    # The user's file has the line elsewhere (line 103 in theirs): matched by its code.
    assert qualname_from_source(SOURCE, "__init__", 103, "self.tokenizer = T5Tokenizer.from_pretrained(version)") == (
        "FrozenT5Embedder.__init__", False)
    assert qualname_from_source(SOURCE, "__init__", 14, "return 1") == ("outer.<locals>.__init__", True)
    assert qualname_from_source(SOURCE, "__init__", 99, "something else") is None
    assert qualname_from_source("def (:", "f", 1, "") is None


def test_known_layout_names_the_class_when_no_source_is_readable():
    frame = Frame("/gone/ldm/modules/encoders/modules.py", 103, "__init__",
                  "self.tokenizer = CLIPTokenizer.from_pretrained(version)")
    resolve_qualname(frame, lambda p: None, [{"path": "ldm/modules/encoders/modules.py", "function": "__init__",
                                             "code": "CLIPTokenizer", "qualname": "FrozenCLIPEmbedder.__init__"}])
    assert (frame.qualname, frame.qualname_source) == ("FrozenCLIPEmbedder.__init__", "known ldm layout")
    other = Frame("/gone/app.py", 3, "main", "run()")
    resolve_qualname(other, lambda p: None, [])
    assert other.qualname == "main"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400),
       st.lists(st.sampled_from(["Traceback (most recent call last):", '  File "/a/b.py", line 3, in f',
                                 "    x()", "ValueError: boom", "", "E   OSError: x", "t.py:3: in f",
                                 "During handling of the above exception, another exception occurred:",
                                 "____ test_x ____", "=== FAILURES ==="]), max_size=12))
def test_parser_never_raises(noise, pieces):
    parsed = parse_log(noise + "\n" + "\n".join(pieces))
    for tb in parsed.tracebacks:
        assert tb.links
