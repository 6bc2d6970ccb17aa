"""Alerting core: windowed counts, rules as data, Alertmanager-style policy, notifiers."""

from ._schema import AlertConfigError
from .config import AlertConfig, build_dispatcher, load_config, parse_config
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
from .rules import Candidate, RuleSet, evaluate, load_rules
from .windows import Buckets, Ewma, WindowCounts, bucket_of, table_key, window_sum

__all__ = [
    "Alert", "AlertConfig", "AlertConfigError", "AlertPolicy", "Buckets", "Candidate", "ConsoleNotifier", "Decision",
    "DeliveryResult", "Dispatcher", "EmailNotifier", "Ewma", "PolicyConfig", "PolicyEngine", "RetryPolicy",
    "Routing", "RuleSet", "SmsNotifier", "SmtpSettings", "TwilioSettings", "WebhookNotifier", "WindowCounts",
    "bucket_of", "build_dispatcher", "evaluate", "is_misclassification", "load_config", "load_rules", "mask_email",
    "mask_phone", "parse_config", "render_sms", "table_key", "window_sum", "write_feedback_csv",
]
