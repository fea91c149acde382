"""The codes `fleet merge` emits for nodes whose report is missing, unreadable or incomplete."""

from ..registry import CodeDoc
from .merge import FLEET_CODES

OTHER_CODES = [CodeDoc(code, title, meaning) for code, (title, meaning) in FLEET_CODES.items()]
