"""Alerting core: the event-time alert engine, rules as data, Alertmanager-style policy, notifiers."""

from ._schema import AlertConfigError
from .config import AlertConfig, build_dispatcher, load_config, parse_config
from .engine import AlertEngine
from .feedback import is_misclassification, write_feedback_csv
from .notifiers import (
    ConsoleNotifier,
    DeliveryResult,
    Dispatcher,
    EmailNotifier,
    RetryPolicy,
    SmsNotifier,
    SmtpSettings,
    TwilioSettings,
    WebhookNotifier,
    render_sms,
)
from .policy import Alert, AlertPolicy, Decision, PolicyConfig, PolicyEngine, Routing, mask_email, mask_phone
from .rules import Candidate, RuleSet, load_rules
from .windows import Buckets, bucket_of

__all__ = [
    "Alert", "AlertConfig", "AlertConfigError", "AlertEngine", "AlertPolicy", "Buckets", "Candidate",
    "ConsoleNotifier", "Decision", "DeliveryResult", "Dispatcher", "EmailNotifier", "PolicyConfig", "PolicyEngine",
    "RetryPolicy", "Routing", "RuleSet", "SmsNotifier", "SmtpSettings", "TwilioSettings", "WebhookNotifier",
    "bucket_of", "build_dispatcher", "is_misclassification", "load_config", "load_rules", "mask_email", "mask_phone",
    "parse_config", "render_sms", "write_feedback_csv",
]
