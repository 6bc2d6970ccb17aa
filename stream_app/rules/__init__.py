"""Rule tables (TOML, under ``tables/``) and the engine that applies them: claims, urgency, topics, incidents."""

from .config import RuleConfigError
from .engine import RuleEngine, RuleResult

__all__ = ["RuleConfigError", "RuleEngine", "RuleResult"]
