"""The words of alert texts, per language (a French brand's comms team reads French).

Only the fixed phrases live here; figures, brands and tweets are inserted by the notifiers' renderers.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "warning": "WARNING",
        "critical": "CRITICAL",
        "negative_spike": "surge of negative tweets",
        "incident_spike": "surge of incidents",
        "misclassification": "model reported wrong",
        "critical_claim": "critical claims",
        "rate": "{observed}/h vs usual {baseline}/h (threshold {threshold}/h)",
        "still": " - still going",
        "resolved": "RESOLVED: back under {threshold} (incident began {start}Z)",
        "claims": "{observed} critical claim(s) from authors with >= {threshold} followers",
        "reports": "{observed} misclassification reports (threshold {threshold})",
        "on": "on",
        "telling": "Most telling tweets:",
        "dashboard": "Dashboard",
    },
    "fr": {
        "warning": "ALERTE",
        "critical": "CRITIQUE",
        "negative_spike": "pic de tweets négatifs",
        "incident_spike": "pic d'incidents",
        "misclassification": "erreurs du modèle signalées",
        "critical_claim": "réclamations critiques",
        "rate": "{observed}/h contre {baseline}/h d'habitude (seuil {threshold}/h)",
        "still": " - toujours en cours",
        "resolved": "RÉSOLU : repassé sous {threshold} (incident commencé à {start}Z)",
        "claims": "{observed} réclamation(s) critique(s) d'auteurs suivis par >= {threshold} comptes",
        "reports": "{observed} signalements d'erreur du modèle (seuil {threshold})",
        "on": "chez",
        "telling": "Tweets les plus parlants :",
        "dashboard": "Tableau de bord",
    },
}


def phrase(lang: str, key: str, **values: object) -> str:
    """The phrase ``key`` in ``lang`` (English when the language or the key is unknown), filled in."""
    table = PHRASES.get(lang) or PHRASES["en"]
    text = table.get(key) or PHRASES["en"][key]
    return text.format(**values) if values else text
