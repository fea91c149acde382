"""Read a `load_state_dict` failure as key sets, not as wording.

`parse_key_report(text)` finds the missing / unexpected / size-mismatch lists in any of the forms
they are printed in (torch's `Error(s) in loading state_dict for X:` message, ldm's
`Missing Keys: [...]` / `missing keys:` prints, truncated or wrapped lists), and `KeyReport`
analyses them:
- groups the keys by component (UNet, VAE, text encoder, EMA, ControlNet, other);
- finds renames: a missing key that is an unexpected key with one level added or dropped
  (`text_model.`, `module.`, `model.`, `_orig_mod.` ...), counted per level and place;
- reads the shapes: UNet input channels (4 txt2img, 9 inpainting, 8 instruct-pix2pix, 5 depth),
  cross-attention context (768 SD 1.x, 1024 SD 2.x, 2048 SDXL), an EMA twin that differs;
- names what that means as `Verdict`s with the finding codes that decide them.

The knowledge base names verdicts by tag (`Pattern(analysis=...)`), and `model.load-keys` reads its
own key lists through `analyse_keys`: one owner for what a key set means. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

COMPONENT_PREFIXES = (
    ("model.diffusion_model.", "unet"), ("first_stage_model.", "vae"), ("cond_stage_model.", "text_encoder"),
    ("conditioner.embedders.", "text_encoder"), ("model_ema.", "ema"), ("control_model.", "controlnet"),
    ("depth_model.", "depth"), ("embedder.", "image_embedder"),
    ("text_model.", "text_encoder"),  # a CLIPTextModel loaded on its own
)
COMPONENT_TITLES = {"unet": "UNet", "vae": "VAE", "text_encoder": "text encoder", "ema": "EMA",
                    "controlnet": "ControlNet", "depth": "depth model", "image_embedder": "image embedder",
                    "other": "other"}
# Levels a saved state dict gains or loses: a wrapper's attribute, a compiler's, transformers' text_model.
RENAME_LEVELS = ("text_model", "module", "model", "_orig_mod", "state_dict", "transformer", "diffusion_model")
UNET_IN_CHANNELS = {4: "txt2img", 9: "inpainting", 8: "instruct-pix2pix", 5: "depth-to-image", 7: "upscaler"}
CONTEXT_FAMILIES = {768: "SD 1.x (CLIP ViT-L)", 1024: "SD 2.x (OpenCLIP ViT-H)", 2048: "SDXL", 1280: "SDXL refiner"}
SHOWN_KEYS = 3

_SECTION = re.compile(
    r"(?P<missing>Missing key\(s\) in state_dict:|missing keys:|Missing Keys:?|Missing keys:)"
    r"|(?P<unexpected>Unexpected key\(s\) in state_dict:|unexpected keys:|Unexpected Keys:?|Unexpected keys:)"
    r"|(?P<size>size mismatch for )", re.I)
_KEY = re.compile(r"[\"']([A-Za-z_][\w.\s]*?)[\"']")
_SIZE = re.compile(r"(?P<key>[\w.]+):\s*copying a param with shape torch\.Size\(\[(?P<ckpt>[\d,\s]*)\]\) from "
                   r"checkpoint, the shape in current model is torch\.Size\(\[(?P<model>[\d,\s]*)\]\)")
# The same with each space optional: a line wrapped inside a word, joined without its break.
_SIZE_WRAPPED = re.compile(_SIZE.pattern.replace(" ", r"\s*"))
_KEY_NAME = re.compile(r"[A-Za-z_][\w.]*\.[\w]+")
UNLABELLED_LEAST = 8  # quoted dotted keys that make a line a key list without its heading
_RESTORED = re.compile(r"Restored from \S+ with (?P<missing>\d+) missing and (?P<unexpected>\d+) unexpected keys")


def component_of(key: str) -> str:
    for prefix, component in COMPONENT_PREFIXES:
        if key.startswith(prefix):
            return component
    for prefix, component in COMPONENT_PREFIXES:  # behind an unusual prefix: `module.model.diffusion_model.`
        if "." + prefix in key:
            return component
    return "other"


@dataclass(frozen=True)
class SizeMismatch:
    key: str
    checkpoint: Tuple[int, ...]
    model: Tuple[int, ...]


@dataclass(frozen=True)
class Rename:
    """`count` keys differ only by `level` after `prefix`: the file has it (`in_file`) or the model has."""

    prefix: str
    level: str
    in_file: bool
    count: int

    def describe(self) -> str:
        where = self.prefix or "the top"
        if self.in_file:
            return f"the file has `{self.level}.` after `{where}` where the model has none ({self.count} keys)"
        return f"the model has `{self.level}.` after `{where}` where the file has none ({self.count} keys)"


@dataclass(frozen=True)
class Verdict:
    tag: str  # what the knowledge base's patterns name (`Pattern(analysis=tag)`)
    code: str  # the finding code that decides it on this machine
    text: str
    fix: str = ""


@dataclass
class KeyReport:
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[SizeMismatch] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)  # printed totals, when larger than the lists
    truncated: bool = False
    # Keys printed without the heading that says which side they are (a paste cut before it).
    listed: List[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.listed or any(self.counts.values()))

    def count(self, kind: str) -> int:
        listed = {"missing": len(self.missing), "unexpected": len(self.unexpected),
                  "mismatched": len(self.mismatched), "listed": len(self.listed)}[kind]
        return max(listed, self.counts.get(kind, 0))

    def by_component(self, kind: str) -> Dict[str, List[str]]:
        keys = [m.key for m in self.mismatched] if kind == "mismatched" else getattr(self, kind)
        groups: Dict[str, List[str]] = {}
        for key in keys:
            groups.setdefault(component_of(key), []).append(key)
        return groups

    def renames(self) -> List[Rename]:
        return find_renames(self.missing, self.unexpected)

    def verdicts(self) -> List[Verdict]:
        return judge(self)

    def summary_lines(self, shown: int = SHOWN_KEYS) -> List[str]:
        """Counts per kind and component with the first keys: what a person reads instead of the list."""
        lines = []
        for kind in ("mismatched", "missing", "unexpected", "listed"):
            total = self.count(kind)
            if not total:
                continue
            groups = self.by_component(kind)
            parts = []
            for component, keys in groups.items():
                first = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
                parts.append(f"{COMPONENT_TITLES.get(component, component)} {len(keys)} ({first})")
            listed = sum(len(keys) for keys in groups.values())
            more = " (the list is cut off in the log)" if self.truncated or total > listed else ""
            name = "keys listed (missing or unexpected: the heading is cut off)" if kind == "listed" else kind
            lines.append(f"{total} {name}: " + "; ".join(parts) + more)
        return lines

    def to_dict(self) -> Dict[str, object]:
        return {
            "counts": {kind: self.count(kind) for kind in ("missing", "unexpected", "mismatched", "listed")},
            "truncated": self.truncated,
            "components": {kind: {c: len(k) for c, k in self.by_component(kind).items()}
                           for kind in ("missing", "unexpected", "mismatched", "listed")},
            "renames": [r.describe() for r in self.renames()],
            "verdicts": [{"tag": v.tag, "code": v.code, "text": v.text} for v in self.verdicts()],
            "summary": self.summary_lines(),
        }


# --- parsing ----------------------------------------------------------------------------------------


def _shape(text: str) -> Tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _keys(section: str) -> Tuple[List[str], bool]:
    """Quoted keys of one section; whether the list was cut (an open quote or `...` at its end)."""
    keys = []
    last_end = 0
    for found in _KEY.finditer(section):
        key = re.sub(r"\s+", "", found.group(1))  # a wrap inside a key
        if "." in key or key in ("betas", "logvar", "alphas_cumprod", "scale_factor"):
            keys.append(key)
        last_end = found.end()
    rest = section[last_end:].strip()
    cut = rest.startswith(("...", "\u2026", ", ...", ",...", "[...]")) or rest in ("", ",") and section.rstrip().endswith(",")
    cut = cut or rest[:200].count('"') % 2 == 1 and not rest.startswith(('".', '"]'))
    return keys, cut


def unlabelled_keys(text: str, least: int = UNLABELLED_LEAST) -> List[str]:
    """The keys of `text` when it is nothing but a list of quoted state-dict keys (a key list whose
    `Missing key(s)` / `Unexpected key(s)` heading is not in the paste), else []."""
    if text.count(".") < least:
        return []
    found = list(_KEY.finditer(text))
    keys = [re.sub(r"\s+", "", m.group(1)) for m in found]
    dotted = [key for key in keys if key.count(".") >= 2]
    if len(dotted) < least:
        return []
    covered = sum(m.end() - m.start() for m in found)
    return dotted if covered >= 0.7 * len(text.strip()) else []


def _size_mismatch(body: str) -> SizeMismatch:
    """One `size mismatch for KEY: copying ...` entry (also wrapped inside a word); one it cannot
    read keeps its key and no shapes."""
    flat = re.sub(r"\s+", " ", body).strip()
    # Joined at the line breaks first: a wrap inside a number (`[3\n20, 4, 3, 3]`) must not split it.
    size = _SIZE_WRAPPED.match(re.sub(r"\s*\n\s*", "", body).strip()) or _SIZE.match(flat)
    if size:
        return SizeMismatch(re.sub(r"\s+", "", size.group("key")), _shape(size.group("ckpt")),
                            _shape(size.group("model")))
    return SizeMismatch(re.sub(r"\s+", "", flat.split(":", 1)[0]).rstrip(","), (), ())


def parse_key_report(text: str) -> Optional[KeyReport]:
    """The key lists printed in `text`, or None when it holds none."""
    if not text or ("key" not in text.lower() and "size mismatch" not in text and '"' not in text
                    and "'" not in text):
        return None
    sections = list(_SECTION.finditer(text))
    report = KeyReport()
    restored = _RESTORED.search(text)
    if restored:
        report.counts = {"missing": int(restored.group("missing")), "unexpected": int(restored.group("unexpected"))}
    if not sections and not restored:
        listed = unlabelled_keys(text)
        if not listed:
            return None
        return KeyReport(listed=listed, truncated=True)
    for index, found in enumerate(sections):
        end = sections[index + 1].start() if index + 1 < len(sections) else len(text)
        body = text[found.end():end]
        if found.group("size"):
            item = _size_mismatch(body)
            last = index == len(sections) - 1
            # An entry without shapes counts only where the log is cut: inside the last one.
            if _KEY_NAME.fullmatch(item.key) and (item.checkpoint or last):
                report.mismatched.append(item)
                report.truncated = report.truncated or not item.checkpoint
            continue
        keys, cut = _keys(body)
        kind = "missing" if found.group("missing") else "unexpected"
        getattr(report, kind).extend(k for k in keys if k not in getattr(report, kind))
        report.truncated = report.truncated or (cut and index == len(sections) - 1)
    return None if report.empty else report


def analyse_keys(missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 mismatched: Iterable[Tuple[str, Sequence[int], Sequence[int]]] = (),
                 counts: Optional[Dict[str, int]] = None) -> KeyReport:
    """A report from lists the caller already has (the model check's own load)."""
    return KeyReport(list(missing), list(unexpected),
                     [SizeMismatch(k, tuple(c or ()), tuple(m or ())) for k, c, m in mismatched],
                     dict(counts or {}), truncated=False)


# --- renames ----------------------------------------------------------------------------------------


def find_renames(missing: Sequence[str], unexpected: Sequence[str]) -> List[Rename]:
    """Levels that one side has and the other lacks, biggest first (at least 2 keys each)."""
    missing_set = set(missing)
    unexpected_set = set(unexpected)
    tally: Dict[Tuple[str, str, bool], int] = {}
    for keys, others, in_file in ((unexpected, missing_set, True), (missing, unexpected_set, False)):
        for key in keys:
            parts = key.split(".")
            for index, level in enumerate(parts[:-1]):
                if level in RENAME_LEVELS and ".".join(parts[:index] + parts[index + 1:]) in others:
                    prefix = ".".join(parts[:index]) + ("." if index else "")
                    tally[(prefix, level, in_file)] = tally.get((prefix, level, in_file), 0) + 1
                    break
    renames = [Rename(prefix, level, in_file, count) for (prefix, level, in_file), count in tally.items() if count >= 2]
    return sorted(renames, key=lambda r: -r.count)


# --- what the keys mean -----------------------------------------------------------------------------


def _unet_input(report: KeyReport) -> Optional[Verdict]:
    for item in report.mismatched:
        if item.key.endswith("input_blocks.0.0.weight") and not item.checkpoint and not item.model:
            # The log is cut inside the entry. Every SD UNet's input conv has 320 output channels
            # (SD 1.x, 2.x, XL), so a mismatch of that weight is one of its input channels.
            return Verdict(
                "unet-in-channels", "config.in-channels",
                "the UNet input conv (input_blocks.0.0.weight) has another shape in the file than in the model "
                "(the shapes are cut off in the log): its input channels differ, 4 txt2img, 9 inpainting, "
                "8 instruct-pix2pix, 5 depth",
                "use the config for the checkpoint's variant (v1-inpainting-inference.yaml for 9 channels)")
        if item.key.endswith("input_blocks.0.0.weight") and len(item.checkpoint) == 4 and len(item.model) == 4:
            file_ch, model_ch = item.checkpoint[1], item.model[1]
            if file_ch == model_ch:
                continue
            file_kind = UNET_IN_CHANNELS.get(file_ch, f"{file_ch}-channel")
            model_kind = UNET_IN_CHANNELS.get(model_ch, f"{model_ch}-channel")
            return Verdict(
                "unet-in-channels", "config.in-channels",
                f"UNet input conv has {file_ch} channels in the file ({file_kind}) but {model_ch} in the model "
                f"({model_kind}){' (EMA copy)' if item.key.startswith('model_ema') else ''}",
                "use the config for the checkpoint's variant (v1-inpainting-inference.yaml for 9 channels)")
    return None


def _context(report: KeyReport) -> Optional[Verdict]:
    for item in report.mismatched:
        key = item.key
        cross = (".attn2.to_k." in key or ".attn2.to_v." in key) and len(item.checkpoint) == 2
        if cross and item.checkpoint[1] != item.model[1]:
            file_family = CONTEXT_FAMILIES.get(item.checkpoint[1], f"context {item.checkpoint[1]}")
            model_family = CONTEXT_FAMILIES.get(item.model[1], f"context {item.model[1]}")
            return Verdict("context-dim", "config.context-dim",
                           f"cross-attention context is {item.checkpoint[1]} in the file ({file_family}) but "
                           f"{item.model[1]} in the model ({model_family})",
                           "use the config of the checkpoint's family (v2-inference.yaml for SD 2.x)")
        if key.endswith("proj_in.weight") and len(item.checkpoint) != len(item.model):
            return Verdict("context-dim", "config.context-dim",
                           "proj_in is linear in one and a 1x1 conv in the other (use_linear_in_transformer: SD 2.x "
                           "vs SD 1.x)", "use the config of the checkpoint's family")
    return None


def _text_encoder_layout(report: KeyReport) -> Optional[Verdict]:
    for rename in report.renames():
        if rename.level != "text_model" or "cond_stage_model" not in rename.prefix + "cond_stage_model":
            continue
        if rename.in_file:
            return Verdict(
                "transformers5-clip-layout", "compat.transformers5-clip-layout",
                f"the text encoder's {rename.count} weights are under `{rename.prefix}text_model.` in the file, "
                "but transformers 5's CLIPTextModel names them without `text_model.`: ldm's strict=False load "
                "drops them all, and the text encoder keeps the weights from_pretrained(version) loaded",
                f"rename the keys before loading: `{rename.prefix}text_model.X` -> `{rename.prefix}X`, or "
                "use transformers < 5 with this checkpoint")
        return Verdict(
            "clip-flat-keys", "config.cond-stage",
            f"the file names {rename.count} text-encoder weights without `text_model.` (saved by transformers 5 "
            "or in a flat layout) while this transformers expects it: they are dropped by a strict=False load",
            f"rename the keys: `{rename.prefix}X` -> `{rename.prefix}text_model.X`, or use transformers >= 5")
    return None


# A CLIP text transformer's own modules; transformers < 5 puts them under `text_model.`.
_CLIP_INNER = re.compile(r"^(?P<prefix>(?:[\w]+\.)*?)(?P<parent>[\w]+\.)?(?:embeddings\.(?:token|position)_embedding\.|"
                         r"encoder\.layers\.\d+\.(?:self_attn|mlp|layer_norm[12])\.|final_layer_norm\.)")


def flat_clip_prefix(keys: Sequence[str]) -> Optional[str]:
    """The prefix under which `keys` hold a CLIP text encoder without `text_model.` (the
    transformers 5 layout of CLIPTextModel), when at least 3 of them do and none has the level."""
    prefixes: Dict[str, int] = {}
    for key in keys:
        if ".text_model." in "." + key:
            return None
        found = _CLIP_INNER.match(key)
        if found:
            prefix = found.group("prefix") + (found.group("parent") or "")
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
    best = max(prefixes.items(), key=lambda item: item[1], default=None)
    return best[0] if best and best[1] >= 3 else None


def _flat_text_encoder(report: KeyReport) -> Optional[Verdict]:
    """CLIP keys without `text_model.` where the other side of the list is not in the log."""
    if report.unexpected and report.missing:
        return None  # both sides are there: renames() decides
    for kind in ("missing", "listed"):
        prefix = flat_clip_prefix(getattr(report, kind))
        if prefix is None:
            continue
        side = ("the model expects them so (transformers >= 5) and the file does not hold them under these names"
                if kind == "missing" else "the list's heading is cut off, so which side has them is not in the log")
        return Verdict(
            "transformers5-clip-layout", "compat.transformers5-clip-layout",
            f"the text-encoder keys `{prefix}embeddings.*`, `{prefix}encoder.layers.*` are named without "
            f"`text_model.`, as transformers 5's CLIPTextModel names them: {side}; a checkpoint written with "
            "transformers 4 names them `text_model.*`",
            f"rename the keys before loading (`{prefix}text_model.X` <-> `{prefix}X`), or use the transformers "
            "the checkpoint was written with")
    return None


def _position_ids(report: KeyReport) -> Optional[Verdict]:
    unexpected = [k for k in report.unexpected if component_of(k) == "text_encoder"]
    if unexpected and any(k.endswith("embeddings.position_ids") for k in unexpected) and not any(
            r.level == "text_model" for r in report.renames()) and len(unexpected) <= 2:
        return Verdict("position-ids", "compat.transformers-position-ids",
                       "the file carries text_model.embeddings.position_ids, which transformers >= 4.31 no longer "
                       "saves: harmless with strict=False, fatal with strict=True",
                       "drop the position_ids key before a strict load")
    return None


def _ema(report: KeyReport) -> List[Verdict]:
    out = []
    if any(component_of(m.key) == "ema" for m in report.mismatched):
        out.append(Verdict("ema-shape", "ckpt.ema-shape-mismatch",
                           "the EMA copy in the file has other shapes than the model (EMA carried over from "
                           "another variant, e.g. a 4-channel model's EMA in an inpainting file)",
                           "set `use_ema: False`, or drop model_ema.* from the file"))
    if any(component_of(k) == "ema" and not k.endswith(("decay", "num_updates")) for k in report.missing):
        out.append(Verdict("ema-missing", "config.use-ema",
                           "use_ema is on but the file has no EMA weights (pruned)", "set `use_ema: False`"))
    elif any(component_of(k) == "ema" for k in report.unexpected):
        out.append(Verdict("ema-unexpected", "config.use-ema",
                           "the file's EMA weights are ignored because use_ema is off", "nothing, or `use_ema: True`"))
    return out


def _family(report: KeyReport) -> Optional[Verdict]:
    if any(r.level == "text_model" for r in report.renames()):
        return None
    te_missing = {k.split(".")[1] for k in report.missing if k.startswith("cond_stage_model.") and "." in k[17:]}
    te_unexpected = {k.split(".")[1] for k in report.unexpected if k.startswith("cond_stage_model.") and "." in k[17:]}
    sdxl = any(k.startswith("conditioner.embedders.") for k in report.missing + report.unexpected)
    if sdxl or (te_missing and te_unexpected and te_missing != te_unexpected):
        return Verdict("family", "config.cond-stage",
                       "the text-encoder keys belong to another family: SD 1 `cond_stage_model.transformer.*`, SD 2 "
                       "`cond_stage_model.model.*`, SDXL `conditioner.embedders.*`",
                       "use the config of the checkpoint's family")
    return None


def _generic_rename(report: KeyReport) -> Optional[Verdict]:
    for rename in report.renames():
        if rename.level != "text_model":
            return Verdict("prefix-rename", "model.load-keys", rename.describe().capitalize(),
                           f"strip or add `{rename.level}.` in the keys before loading")
    return None


def judge(report: KeyReport) -> List[Verdict]:
    """What the key sets mean, most specific first."""
    found: List[Optional[Verdict]] = [_unet_input(report), _context(report),
                                      _text_encoder_layout(report) or _flat_text_encoder(report)]
    found += _ema(report)
    found += [_position_ids(report), _family(report), _generic_rename(report)]
    return [v for v in found if v is not None]
